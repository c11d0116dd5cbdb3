"""The command line: the only place that reads flags, prints for people, and exits.

Exit codes: 0 success or nothing to do; 1 the operation failed (the store is
unchanged); 2 bad usage or configuration.

Each command imports what it uses when it runs: `modelsync --version` or `publish`
should not pay for the daemon, Prometheus or every storage SDK.
"""

from __future__ import annotations

import functools
import gc
import importlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelsync import __version__
from modelsync.cliopts import config_option
from modelsync.errors import ConfigError, ModelsyncError
from modelsync.oneline import one_line

if TYPE_CHECKING:
    from modelsync.config import Config

__all__ = ["main"]

# Flags and variables that override keys of the configuration file.
_OVERRIDES = ("store", "state_dir", "model", "source", "keep", "interval", "listen", "token")


@dataclass(frozen=True)
class ConfigInput:
    """Where a command's configuration comes from: a file, flags and variables."""

    path: Path | None
    overrides: dict[str, Any]

    def load(self) -> Config:
        """The validated configuration, narrowed to --model when one is named."""
        from modelsync.config import load_config

        config = load_config(self.path, self.overrides)
        model = self.overrides.get("model")
        if model is None:
            return config
        return config.model_copy(update={"models": (config.model(model),)})


def _config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Flags shared by every command that reads the configuration; the command gets
    them as one ``config_input`` argument."""
    return _with_config_flags(func, model_flags=True)


def _store_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The configuration flags of a command whose MODEL argument names the model
    (rollback, unpin): no --model beside it; --source only for a sidecar configured
    without a file (MODELSYNC_KEEP still applies, from the environment)."""
    return _with_config_flags(func, model_flags=False)


def _with_config_flags(func: Callable[..., Any], model_flags: bool) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, config_path: Path | None, **kwargs: Any) -> Any:
        overrides = {key: kwargs.pop(key) for key in _OVERRIDES if key in kwargs}
        if not model_flags:
            overrides["model"] = kwargs["model_name"]
        return func(*args, config_input=ConfigInput(config_path, overrides), **kwargs)

    options = [
        config_option("TOML configuration file."),
        click.option("--store", envvar="MODELSYNC_STORE", help="Served tree (absolute path)."),
        click.option(
            "--state-dir",
            envvar="MODELSYNC_STATE_DIR",
            help="State directory (default .modelsync-<store name> beside the store).",
        ),
    ]
    if model_flags:
        options += _model_flags()
    else:
        options += [
            click.option(
                "--source",
                envvar="MODELSYNC_SOURCE",
                help="Source URL of MODEL, without a configuration file.",
            ),
            click.option("--keep", type=int, envvar="MODELSYNC_KEEP", hidden=True),
        ]
    decorated: Callable[..., Any] = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def _model_flags() -> list[Callable[[Any], Any]]:
    return [
        click.option(
            "--model",
            envvar="MODELSYNC_MODEL",
            help="Only this model; with --source, the one model to sync.",
        ),
        click.option(
            "--source",
            envvar="MODELSYNC_SOURCE",
            help="Source URL of --model (file:///path, gs://, s3://, az://: see docs).",
        ),
        click.option(
            "--keep",
            type=int,
            envvar="MODELSYNC_KEEP",
            help="Revisions retained for rollback (with --model).",
        ),
    ]


# The group's options that take a value; they may come after the command too.
_GLOBAL_OPTIONS = ("--log-level", "--log-format")


def _hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with the group's options moved before the command, wherever they were:
    `modelsync run --log-format json` means what `modelsync --log-format json run` does."""
    start = 0
    while start < len(args) and args[start].startswith("-"):
        start += 2 if args[start] in _GLOBAL_OPTIONS else 1
    if start >= len(args):
        return args
    hoisted: list[str] = []
    rest: list[str] = []
    i = start + 1
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg in _GLOBAL_OPTIONS and i + 1 < len(args):
            hoisted += args[i : i + 2]
            i += 2
            continue
        if arg.partition("=")[0] in _GLOBAL_OPTIONS:
            hoisted.append(arg)
        else:
            rest.append(arg)
        i += 1
    return [*args[:start], *hoisted, args[start], *rest]


class _Commands(click.Group):
    """The top-level group, whose options a command line may give before or after the
    command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist_global_options(args))

    # Commands that live in their own modules, imported only when named (or when
    # --help lists them): a `sync` does not pay for `release` or `publish`.
    _LAZY = {
        "publish": "modelsync.publish_cli",
        "release": "modelsync.release_cli",
        "verify": "modelsync.verify_cli",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._LAZY and cmd_name not in self.commands:
            module = importlib.import_module(self._LAZY[cmd_name])
            self.add_command(getattr(module, cmd_name))
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="--log-level and --log-format may also follow the command "
    "(modelsync run --log-format json).",
)
@click.version_option(__version__, prog_name="modelsync")
@click.option(
    "--log-level",
    envvar="MODELSYNC_LOG_LEVEL",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--log-format",
    envvar="MODELSYNC_LOG_FORMAT",
    default="auto",
    type=click.Choice(["auto", "json", "console"]),
    help="auto: console lines on a terminal, JSON lines otherwise.",
)
def cli(log_level: str, log_format: str) -> None:
    """Keep a model server on the right model revision."""
    from modelsync.logs import configure_logging

    configure_logging(log_level, log_format)


@cli.command()
@_config_options
@click.option(
    "--require",
    is_flag=True,
    help="Exit 1 if a model ends with no active version (init containers).",
)
def sync(config_input: ConfigInput, require: bool) -> int:
    """Run one sync pass for every configured model (or --model)."""
    from modelsync.cancel import CancelToken
    from modelsync.progress import LoggedProgress, terminal_progress
    from modelsync.sync import Syncer
    from modelsync.volume import Store

    config = config_input.load()
    # What start-up built (modules, pydantic's validators) lives as long as the process:
    # frozen, a full collection during the pass walks only what the pass makes (the
    # one each `sync` ran walked everything: 14-24 ms).
    gc.freeze()
    store = Store(config.store, config.state_path)
    store.prepare()
    # A person at a terminal gets a bar; an init container's log a line every 10 s.
    syncer = Syncer(
        store,
        progress=terminal_progress if sys.stderr.isatty() else LoggedProgress(),
        identity=config.identity,
    )
    failed = False
    try:
        for entry in config.models:
            cancel = CancelToken(deadline=time.monotonic() + config.pass_timeout)
            result = syncer.sync(entry, cancel)
            failed |= not result.ok
            if result.waiting is not None or (result.deferred and result.active is not None):
                # Nothing failed, so no error was logged (a newer revision waits for the
                # server, or an older one stood in for one that could not be fetched):
                # say why the command exits 1.
                click.echo(one_line(f"modelsync: model {entry.name}: {result.error}"), err=True)
            if require and result.active is None:
                click.echo(f"modelsync: model {entry.name} has no active version", err=True)
                failed = True
    finally:
        syncer.close()
    return 1 if failed else 0


@cli.command()
@_config_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_input: ConfigInput, as_json: bool) -> int:
    """Show each model's active, retained and refused versions and last error."""
    from modelsync.status import collect_status
    from modelsync.status_text import status_lines
    from modelsync.volume import Store

    config = config_input.load()
    report = collect_status(config, Store(config.store, config.state_path), time.time())
    for line in [json.dumps(report, indent=2)] if as_json else status_lines(report):
        click.echo(line)
    return 0


@cli.command()
@_config_options
@click.option("--interval", envvar="MODELSYNC_INTERVAL", help="Poll interval, e.g. 10m.")
@click.option(
    "--listen",
    envvar="MODELSYNC_ADMIN_LISTEN",
    help="Admin endpoint host:port (default 127.0.0.1:8686).",
)
@click.option(
    "--token", envvar="MODELSYNC_ADMIN_TOKEN", help="Bearer token required by POST /sync."
)
def run(config_input: ConfigInput) -> int:
    """Run as a daemon: a pass at start, then every interval; SIGHUP reloads."""
    from prometheus_client import CollectorRegistry

    from modelsync.daemon import Daemon
    from modelsync.sdnotify import SystemdNotifier

    config = config_input.load()
    daemon = Daemon(
        config_input.load,
        config,
        registry=CollectorRegistry(),
        notifier=SystemdNotifier(),
        watch_config=str(config_input.path) if config_input.path else None,
    )
    daemon.run()
    return 0


@cli.command()
@click.argument("model_name", metavar="MODEL")
@_store_options
@click.option(
    "--to",
    "to_version",
    type=click.IntRange(min=1),
    help="Retained version to go back to (default: the newest older one).",
)
def rollback(model_name: str, config_input: ConfigInput, to_version: int | None) -> int:
    """Serve a retained older revision of MODEL and pin it there until `unpin`."""
    from modelsync.cancel import CancelToken
    from modelsync.sync import Syncer
    from modelsync.volume import Store

    config = config_input.load()
    syncer = Syncer(Store(config.store, config.state_path))
    deadline = time.monotonic() + config.pass_timeout
    result = syncer.rollback_to(
        config.model(model_name), to_version, CancelToken(deadline=deadline)
    )
    click.echo(
        f"{model_name}: serving version {result.active}; pinned (modelsync unpin "
        f"{model_name} to follow new revisions again)"
    )
    return 0


@cli.command()
@click.argument("model_name", metavar="MODEL")
@_store_options
def unpin(model_name: str, config_input: ConfigInput) -> int:
    """Let MODEL follow new revisions again after a manual rollback."""
    from modelsync.sync import Syncer
    from modelsync.volume import Store

    config = config_input.load()
    pinned = Syncer(Store(config.store, config.state_path)).unpin(config.model(model_name))
    click.echo(
        f"{model_name}: " + (f"unpinned from version {pinned}" if pinned else "was not pinned")
    )
    return 0


@cli.command()
@click.argument("private_key", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("public_key", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--type",
    "kind",
    type=click.Choice(["ed25519", "p256", "p384", "p521"]),
    default="ed25519",
    show_default=True,
    help="ed25519 signs modelsync manifests; p256/p384/p521 sign OpenSSF model.sig bundles.",
)
def keygen(private_key: Path, public_key: Path, kind: str) -> int:
    """Write a new key pair (PEM; the private key mode 0600) for signed publishing."""
    from modelsync.signing import generate_keypair

    generate_keypair(private_key, public_key, kind)
    click.echo(f"private key: {private_key} (keep it secret; for `publish --sign-key`)")
    setting = "verify.public_keys" if kind == "ed25519" else "verify.oms_keys"
    click.echo(f"public key:  {public_key} (for {setting})")
    return 0


def _exit_code(func: Callable[[], Any]) -> int:
    try:
        result = func()
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("modelsync: aborted", err=True)
        return 1
    except ConfigError as exc:
        click.echo(one_line(f"modelsync: config error: {exc}"), err=True)
        return 2
    except ModelsyncError as exc:
        click.echo(one_line(f"modelsync: error: {exc}"), err=True)
        return 1
    except OSError as exc:
        # Every expected I/O failure is translated where it happens; this is the net
        # that keeps an unforeseen one to one line and exit 1 too.
        where = f" {exc.filename}" if exc.filename else ""
        click.echo(one_line(f"modelsync: error:{where} {exc.strerror or exc}"), err=True)
        return 1
    return int(result or 0)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    # structlog renders exceptions with rich when rich can be imported, and importing
    # it costs ~60 ms at every start (about a sixth of a no-op `sync`). rich is here
    # only for keras (TensorFlow runs in child processes, never in this one) and for
    # sigstore's own command line: the command hides it from structlog (plain
    # tracebacks instead).
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    # botocore imports urllib3's pyOpenSSL shim only to take the standard library's
    # SSLContext back out of it (its fallback is that same class); with pyOpenSSL
    # installed (the oms extra) that import alone is ~40 ms of every s3:// command.
    # Nothing in this process injects pyOpenSSL into urllib3.
    sys.modules.setdefault("urllib3.contrib.pyopenssl", None)  # type: ignore[arg-type]
    sys.exit(
        _exit_code(
            functools.partial(cli.main, args=argv, prog_name="modelsync", standalone_mode=False)
        )
    )
