"""Options shared by the command modules (cli.py, publish_cli.py, release_cli.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelsync.manifest import MAX_VERSION

if TYPE_CHECKING:
    from modelsync.gates import GatesConfig

__all__ = ["config_option", "gate_options", "gates_from_flags", "key_values"]


def config_option(help_text: str) -> Callable[[Any], Any]:
    """--config FILE (MODELSYNC_CONFIG), passed to the command as ``config_path``."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        envvar="MODELSYNC_CONFIG",
        help=help_text,
    )


def gate_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--gate RULE (repeatable), --baseline VERSION, --if-missing: the relative gate
    (modelsync.gates) that `publish` and `release start` apply against the channel's
    stable revision; the command gets ``gate``, ``baseline`` and ``if_missing``."""
    options = [
        click.option(
            "--gate",
            "gate",
            multiple=True,
            metavar="RULE",
            help="A gate rule, e.g. 'ndcg@10 >= production - 0.005' or 'ndcg@10 >= baseline "
            "+ 0.02' (production: the channel's stable version). Refused: nothing written.",
        ),
        click.option(
            "--baseline",
            type=click.IntRange(1, MAX_VERSION),
            help="The baseline revision's version (rules that name `baseline`).",
        ),
        click.option(
            "--if-missing",
            "if_missing",
            type=click.Choice(["refuse", "pass"]),
            default="refuse",
            show_default=True,
            help="A metric missing on the candidate, production or the baseline.",
        ),
    ]
    decorated: Callable[..., Any] = func
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def gates_from_flags(
    gate: tuple[str, ...], baseline: int | None, if_missing: str
) -> GatesConfig | None:
    """The gate the flags describe (None without --gate); a usage error names the flag."""
    from modelsync.gates import parse_rules

    if not gate:
        if baseline is not None:
            raise click.BadParameter("needs at least one --gate rule", param_hint="--baseline")
        return None
    try:
        return parse_rules(gate, baseline, if_missing)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--gate") from None


def key_values(pairs: tuple[str, ...], what: str, number: bool) -> dict[str, Any]:
    """KEY=VALUE flags (``what`` names the flag) as a dict; values as numbers if ``number``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        if number:
            try:
                out[key] = float(value)
            except ValueError:
                raise click.BadParameter(
                    f"{pair!r}: value is not a number", param_hint=what
                ) from None
        else:
            out[key] = value
    return out
