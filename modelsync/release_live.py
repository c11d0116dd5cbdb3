"""`modelsync release`: the flags of the halt rules on live checks, and what status shows
of the hosts' smoke and bake verdicts (modelsync.sync.policy.halt)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from modelsync.channel import LiveHalt

__all__ = ["live_halt_options", "print_live"]


def live_halt_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--halt-on-checks, --halt-on-error-increase, --halt-on-latency-ratio,
    --halt-min-hosts, folded into one ``halt_live`` argument (None: none given)."""

    @click.option(
        "--halt-on-checks",
        type=click.IntRange(1, 1_000_000),
        help="Hosts reporting a failed smoke or bake that halt it.",
    )
    @click.option(
        "--halt-on-error-increase",
        type=click.FloatRange(0, 1),
        help="Halt when the cohort's median error-ratio rise over the previous revision "
        "exceeds this.",
    )
    @click.option(
        "--halt-on-latency-ratio",
        type=click.FloatRange(1, 1000),
        help="Halt when the cohort's median latency ratio (new / previous) exceeds this.",
    )
    @click.option(
        "--halt-min-hosts",
        type=click.IntRange(1, 1_000_000),
        help="Hosts with bake figures needed before a median counts (default 1).",
    )
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        halt_on_checks: int | None,
        halt_on_error_increase: float | None,
        halt_on_latency_ratio: float | None,
        halt_min_hosts: int | None,
        **kwargs: Any,
    ) -> Any:
        given = (halt_on_checks, halt_on_error_increase, halt_on_latency_ratio, halt_min_hosts)
        halt_live = None
        if any(v is not None for v in given):
            halt_live = LiveHalt(
                checks=halt_on_checks,
                error_increase=halt_on_error_increase,
                latency_ratio=halt_on_latency_ratio,
                min_hosts=halt_min_hosts or 1,
            )
        return command(*args, halt_live=halt_live, **kwargs)

    return wrapper


def _figures(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "-"
    err = figures.get("error_ratio")
    latency = figures.get("latency_p99_s") or figures.get("latency_mean_s")
    return (
        f"{figures.get('requests', 0)} req, err "
        + ("-" if err is None else f"{err:.4f}")
        + ", latency "
        + ("-" if latency is None else f"{latency * 1000:.1f} ms")
    )


def print_live(doc: dict[str, Any]) -> None:
    """The hosts' smoke and bake verdicts, and the cohort's medians."""
    live = doc.get("live") or {}
    if not live:
        return
    click.echo("live checks:")
    for host, checks in live.items():
        smoke, bake = checks.get("smoke"), checks.get("bake")
        parts = []
        if smoke:
            parts.append(
                f"smoke {smoke['verdict']}" + (f" ({smoke['reason']})" if smoke["reason"] else "")
            )
        if bake:
            parts.append(
                f"bake {bake['verdict']}: {_figures(bake.get('current'))} "
                f"(previous {_figures(bake.get('previous'))})"
            )
        click.echo(f"  {host}: " + "; ".join(parts or ["-"]))
    agg = doc.get("live_aggregate") or {}
    rise, ratio = agg.get("median_error_increase"), agg.get("median_latency_ratio")
    click.echo(
        f"  cohort median over {agg.get('hosts_with_bake_figures', 0)} hosts: error-ratio rise "
        + ("-" if rise is None else f"{rise:.4f}")
        + ", latency ratio "
        + ("-" if ratio is None else f"{ratio:.2f}")
    )
