"""The bake on the status page: live figures beside the offline metrics.

Rows for the "Revisions side by side" table (one cell per revision, from the
``revisions[].bake`` of a `/status` report) and the line about a bake in progress.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["bake_line", "live_rows"]


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _figure(figures: dict[str, Any] | None, key: str) -> str:
    if not figures:
        return "-"
    value = figures.get(key)
    if value is None:
        return "-"
    if key == "error_ratio":
        return f"{value * 100:.2f} %"
    if key == "requests":
        return f"{value:,}"
    return f"{value * 1000:.1f} ms"


def _latency(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "-"
    if figures.get("latency_p99_s") is not None:
        return "p99 " + _figure(figures, "latency_p99_s")
    return "mean " + _figure(figures, "latency_mean_s")


def live_rows(revisions: list[dict[str, Any]]) -> str:
    """Bake verdict, requests, error ratio and latency per revision, each with the
    previous revision's figure beside it; nothing when no revision was baked."""
    bakes = [r.get("bake") for r in revisions]
    if not any(bakes):
        return ""

    def row(title: str, cell: Any) -> str:
        cells = "".join(f"<td class='num'>{cell(b) if b else '-'}</td>" for b in bakes)
        return f"<tr><th>{_e(title)}</th><td class='num muted'>live</td>{cells}</tr>"

    def pair(show: Any) -> Any:
        def cell(b: dict[str, Any]) -> str:
            previous = _e(show(b.get("previous")))
            return f"{_e(show(b['current']))}<br><span class='muted'>prev {previous}</span>"

        return cell

    return "".join(
        [
            row("bake verdict", lambda b: _e(b["verdict"])),
            row("requests (bake)", pair(lambda f: _figure(f, "requests"))),
            row("error ratio (bake)", pair(lambda f: _figure(f, "error_ratio"))),
            row("latency (bake)", pair(_latency)),
        ]
    )


def bake_line(model: dict[str, Any]) -> tuple[str, str] | None:
    """("baking", what and how long) for a bake in progress."""
    bake = model.get("bake")
    if not bake:
        return None
    if bake["verdict"] == "failed":
        return ("bake failed", f"version {bake['version']}: rolling back: {bake['reason']}")

    def said(figures: dict[str, Any] | None) -> str:
        if not figures:
            return "no figures yet"
        return (
            f"{_figure(figures, 'requests')} requests, error ratio "
            f"{_figure(figures, 'error_ratio')}, latency {_latency(figures)}"
        )

    compared = (
        f"; so far {said(bake.get('figures'))}; "
        f"previous revision {said(bake.get('previous_figures'))}"
    )
    return (
        "baking",
        f"version {bake['version']} (previous {bake['previous']}): "
        f"{bake['remaining_s']:g} s left, until {bake['ends_at']}{compared}",
    )
