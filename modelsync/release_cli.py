"""The `modelsync release` commands (modelsync.release does the work)."""

from __future__ import annotations

import functools
import getpass
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelsync.cliopts import config_option
from modelsync.errors import ConfigError

if TYPE_CHECKING:
    from modelsync.release import Release, RolloutStatus

__all__ = ["release"]


def _target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Which model's channel: from the configuration, or --source and --channel."""
    options = [
        config_option("TOML configuration naming MODEL (its source and channel)."),
        click.option("--source", help="Source URL of MODEL (instead of --config)."),
        click.option(
            "--source-option",
            "source_option",
            multiple=True,
            metavar="KEY=VALUE",
            help="A [models.source_options] key of the source's backend.",
        ),
        click.option("--channel", help="Channel name (default: the model's `channel`)."),
    ]
    decorated: Callable[..., Any] = func
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def _open(
    model: str,
    config_path: Path | None,
    source: str | None,
    source_option: tuple[str, ...],
    channel: str | None,
) -> Release:
    from modelsync.config import load_config
    from modelsync.release import Release
    from modelsync.sources import open_source

    options: dict[str, Any] = {}
    for pair in source_option:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--source-option")
        options[key] = value
    if source is None:
        if config_path is None:
            raise ConfigError("release: give --config (MODELSYNC_CONFIG) or --source URL")
        entry = load_config(config_path).model(model)
        source, options = entry.source, {**entry.source_options, **options}
        channel = channel or entry.channel
    if channel is None:
        raise ConfigError(f"release: model {model!r} has no `channel`: give --channel NAME")
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    return Release(open_source(source, options), model, channel, who)


def _command(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(
        model: str,
        config_path: Path | None,
        source: str | None,
        source_option: tuple[str, ...],
        channel: str | None,
        **kwargs: Any,
    ) -> Any:
        release = _open(model, config_path, source, source_option, channel)
        try:
            return func(release, **kwargs)
        finally:
            release.source.close()

    return wrapper


def _show(release: Release, action: str) -> None:
    pointer, _ = release.read()
    assert pointer is not None
    canary = (
        f"canary {pointer.canary.version} at {pointer.canary.percent:g} %"
        if pointer.canary
        else "no canary"
    )
    click.echo(
        f"{release.model} [{release.channel}]: {action}: stable {pointer.stable or '-'}, "
        f"{canary} (halt_after {pointer.halt_after}, on_halt {pointer.on_halt})"
    )


@click.group()
def release() -> None:
    """Roll a version out through a release channel: canary, promote, abort, status."""


_percent = click.option(
    "--percent", type=click.FloatRange(0, 100), required=True, help="Share of hosts (0-100)."
)


@release.command()
@click.argument("model")
@click.argument("version", type=click.IntRange(min=1))
@_target_options
@_percent
@click.option("--halt-after", type=click.IntRange(min=1), help="Failed reports that halt it.")
@click.option("--on-halt", type=click.Choice(["revert", "hold"]), help="Adopters on a halt.")
@_command
def start(
    release: Release, version: int, percent: float, halt_after: int | None, on_halt: str | None
) -> int:
    """Make VERSION the canary of MODEL's channel, served by PERCENT of the hosts."""
    release.start(version, percent, halt_after, on_halt)
    _show(release, f"canary {version} started")
    return 0


@release.command(name="set")
@click.argument("model")
@_target_options
@_percent
@_command
def set_percent(release: Release, percent: float) -> int:
    """Change the share of hosts that serve the canary (hosts in stay in)."""
    release.set_percent(percent)
    _show(release, "canary share changed")
    return 0


@release.command()
@click.argument("model")
@_target_options
@click.option("--version", type=click.IntRange(min=1), help="Make this the stable version.")
@_command
def promote(release: Release, version: int | None) -> int:
    """The canary (or --version) becomes the stable version on every host."""
    release.promote(version)
    _show(release, "promoted")
    return 0


@release.command()
@click.argument("model")
@_target_options
@_command
def abort(release: Release) -> int:
    """Drop the canary: every host serves the stable version again."""
    release.abort()
    _show(release, "canary aborted")
    return 0


@release.command()
@click.argument("model")
@_target_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_command
def status(release: Release, as_json: bool) -> int:
    """The pointer, and the hosts' reports on the version being rolled out."""
    rollout = release.status()
    if as_json:
        click.echo(json.dumps(rollout.as_dict(), indent=2, sort_keys=True))
        return 0
    _show(release, "status")
    _print_reports(rollout)
    return 0


def _print_reports(rollout: RolloutStatus) -> None:
    doc = rollout.as_dict()
    if rollout.version is None:
        click.echo("no version named yet")
        return
    click.echo(
        f"version {rollout.version}: {len(doc['confirmed'])} confirmed, "
        f"{len(doc['failed'])} rolled back or refused, {len(doc['not_reported'])} not reported"
    )
    for identity, why in doc["failed"].items():
        click.echo(f"  {identity}: {why}")
    if doc["not_reported"]:
        click.echo("  not reported: " + ", ".join(doc["not_reported"]))
    if doc["unreadable_reports"]:
        click.echo(f"  {doc['unreadable_reports']} unreadable report objects ignored")
