"""The `modelsync release` commands (modelsync.release does the work)."""

from __future__ import annotations

import functools
import getpass
import json
import math
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelsync.cancel import CancelToken
from modelsync.cliopts import config_option, gate_options, gates_from_flags, key_values
from modelsync.errors import ConfigError
from modelsync.manifest import MAX_VERSION
from modelsync.release_live import live_halt_options, print_live

if TYPE_CHECKING:
    from modelsync.channel import LiveHalt
    from modelsync.gates import GatesConfig
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


def _signing_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """How a changed pointer is signed (modelsync.channel_trust)."""
    options = [
        click.option(
            "--sign-key",
            "sign_key",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="MODELSYNC_SIGN_KEY",
            help="Ed25519 private key (PEM, as for `publish --sign-key`): write the pointer "
            "signed, with a sequence number and an expiry (env MODELSYNC_SIGN_KEY).",
        ),
        click.option(
            "--expires",
            default="7d",
            show_default=True,
            help="How long the signed pointer stays valid (e.g. 12h, 7d): hosts that require "
            "signatures refuse it after that; renew it with `release renew`.",
        ),
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
    sign_key: Path | None = None,
    expires: str = "7d",
) -> Release:
    from modelsync.config import load_config
    from modelsync.release import Release
    from modelsync.sources import open_source
    from modelsync.units import parse_duration

    try:
        expires_in = parse_duration(expires)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    if expires_in <= 0:
        raise click.BadParameter("must be longer than 0", param_hint="--expires")
    signer = None
    if sign_key is not None:
        from modelsync.signing import load_private_key

        signer = load_private_key(sign_key)
    trusted = []
    options = key_values(source_option, "--source-option", number=False)
    if source is None:
        if config_path is None:
            raise ConfigError("release: give --config (MODELSYNC_CONFIG) or --source URL")
        entry = load_config(config_path).model(model)
        source, options = entry.source, {**entry.source_options, **options}
        channel = channel or entry.channel
        if signer is not None:
            from modelsync.signing import load_public_key

            trusted = [load_public_key(path) for path in entry.verify.public_keys]
    if channel is None:
        raise ConfigError(f"release: model {model!r} has no `channel`: give --channel NAME")
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    return Release(
        open_source(source, options),
        model,
        channel,
        who,
        signer=signer,
        trusted=trusted,
        expires_in=expires_in,
    )


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
        signing = {k: kwargs.pop(k) for k in ("sign_key", "expires") if k in kwargs}
        release = _open(model, config_path, source, source_option, channel, **signing)
        try:
            return func(release, **kwargs)
        finally:
            release.source.close()

    return wrapper


def _show(release: Release, action: str) -> None:
    envelope, _ = release.read_envelope()
    assert envelope is not None
    pointer = envelope.pointer
    canary = (
        f"canary {pointer.canary.version} at {pointer.canary.percent:g} %"
        if pointer.canary
        else "no canary"
    )
    signed = ""
    if envelope.payload is not None and pointer.expires is not None:
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(min(pointer.expires, 2**34)))
        signed = f"; signed, seq {pointer.seq}, expires {expires}"
    click.echo(
        f"{release.model} [{release.channel}]: {action}: stable {pointer.stable or '-'}, "
        f"{canary} (halt_after {pointer.halt_after}, on_halt {pointer.on_halt}{signed})"
    )


def _finite_percent(ctx: click.Context, param: click.Parameter, value: float | None) -> Any:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number from 0 to 100")
    return value


@click.group()
def release() -> None:
    """Roll a version out through a release channel: canary, promote, abort, status."""


_percent = click.option(
    "--percent",
    type=click.FloatRange(0, 100),
    required=True,
    callback=_finite_percent,
    help="Share of hosts (0-100).",
)
_VERSION = click.IntRange(1, MAX_VERSION)


@release.command()
@click.argument("model")
@click.argument("version", type=_VERSION)
@_target_options
@_signing_options
@_percent
@click.option(
    "--halt-after", type=click.IntRange(1, 1_000_000), help="Failed reports that halt it."
)
@click.option("--on-halt", type=click.Choice(["revert", "hold"]), help="Adopters on a halt.")
@gate_options
@live_halt_options
@_command
def start(
    release: Release,
    version: int,
    percent: float,
    halt_after: int | None,
    on_halt: str | None,
    gate: tuple[str, ...],
    baseline: int | None,
    if_missing: str,
    halt_live: LiveHalt | None,
) -> int:
    """Make VERSION the canary of MODEL's channel, served by PERCENT of the hosts.

    With --gate, VERSION's manifest metrics must meet every rule against the channel's
    stable version (and --baseline): otherwise nothing is written (exit 1)."""
    gates = gates_from_flags(gate, baseline, if_missing)
    release.start(
        version,
        percent,
        halt_after,
        on_halt,
        gate=_gate(release, version, gates),
        halt_live=halt_live,
    )
    _show(release, f"canary {version} started")
    return 0


def _gate(
    release: Release, version: int, gates: GatesConfig | None
) -> Callable[[int | None], None] | None:
    """The check `release start` makes on the pointer it is about to change."""
    if gates is None:
        return None
    from modelsync.channel_gate import judge_against, manifest_metrics, require

    cancel = CancelToken()
    candidate = manifest_metrics(release.source, version, cancel)

    def check(stable: int | None) -> None:
        verdict = judge_against(release.source, stable, gates, candidate, version, cancel)
        require(verdict, f"{release.where}: canary {version}")

    return check


@release.command(name="set")
@click.argument("model")
@_target_options
@_signing_options
@click.option(
    "--percent",
    type=click.FloatRange(0, 100),
    callback=_finite_percent,
    help="Share of hosts that serve the canary (hosts in stay in).",
)
@click.option("--stable", type=_VERSION, help="Make this the stable version.")
@click.option(
    "--rollback",
    is_flag=True,
    help="--stable is older than the current stable: move the fleet back deliberately "
    "(hosts that require signatures accept an older stable only so).",
)
@_command
def set_pointer(release: Release, percent: float | None, stable: int | None, rollback: bool) -> int:
    """Change the canary's share (--percent) or the stable version (--stable)."""
    if (percent is None) == (stable is None):
        raise click.UsageError("give --percent or --stable (one of them)")
    if rollback and stable is None:
        raise click.UsageError("--rollback goes with --stable")
    if stable is not None:
        release.set_stable(stable, rollback)
        _show(release, "rolled back" if rollback else "stable set")
        return 0
    assert percent is not None
    release.set_percent(percent)
    _show(release, "canary share changed")
    return 0


@release.command()
@click.argument("model")
@_target_options
@_signing_options
@click.option("--version", type=_VERSION, help="Make this the stable version.")
@click.option(
    "--force",
    is_flag=True,
    help="Promote the canary even when it is halted (its failure markers reached "
    "halt_after): every host then serves the version some hosts could not.",
)
@_command
def promote(release: Release, version: int | None, force: bool) -> int:
    """The canary (or --version) becomes the stable version on every host.

    A halted canary is refused (exit 1) unless --force."""
    release.promote(version, force)
    _show(release, "promoted")
    return 0


@release.command()
@click.argument("model")
@_target_options
@_signing_options
@_command
def renew(release: Release) -> int:
    """Sign the unchanged pointer again with a new seq and expiry (needs --sign-key)."""
    release.renew()
    _show(release, "renewed")
    return 0


@release.command()
@click.argument("model")
@_target_options
@_signing_options
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
    halt = rollout.halt
    if halt is not None:
        pointer = rollout.pointer
        click.echo(
            f"HALTED: canary {rollout.version} by rule {halt[0]}: {halt[1]} "
            f"(on_halt {pointer.on_halt}: "
            + (
                "its adopters went back to stable"
                if pointer.on_halt == "revert"
                else "adopters hold it"
            )
            + "); no host adopts it: abort it, or promote --force"
        )
        if rollout.markers:
            click.echo("  failed: " + ", ".join(sorted(rollout.markers)))
    click.echo(
        f"version {rollout.version}: {len(doc['confirmed'])} confirmed, "
        f"{len(doc['failed'])} rolled back or refused, {len(doc['not_reported'])} not reported"
    )
    for identity, why in doc["failed"].items():
        click.echo(f"  {identity}: {why}")
    if doc["not_reported"]:
        click.echo("  not reported: " + ", ".join(doc["not_reported"]))
    print_live(doc)
    if doc["unreadable_reports"]:
        click.echo(f"  {doc['unreadable_reports']} unreadable report objects ignored")
