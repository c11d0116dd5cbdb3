"""Run a command to tell the server (model, version and path in its environment)."""

from __future__ import annotations

from pydantic import Field

from modelsync.cancel import CancelToken
from modelsync.children import ChildTimedOut, run_child
from modelsync.errors import ReloadError
from modelsync.methods import Method
from modelsync.notify import NotifyConfig
from modelsync.reload import ReloadTarget, child_env

__all__ = ["METHOD", "CommandFailed", "ExecNotifier", "ExecNotifyOptions", "run_command"]


class CommandFailed(ReloadError):
    """The command ran and exited non-zero."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


def run_command(
    argv: tuple[str, ...], target: ReloadTarget, timeout: float, cancel: CancelToken
) -> None:
    """Run ``argv``; ReloadError with its last stderr line unless it exits 0 in time,
    Cancelled (the command stopped) when the pass's token fires first."""
    try:
        done = run_child(argv, child_env(target.env()), timeout, cancel)
    except FileNotFoundError as exc:
        raise ReloadError(f"command not found: {argv[0]}") from exc
    except ChildTimedOut as exc:
        raise ReloadError(f"{argv[0]} did not finish within {timeout:g}s; killed") from exc
    except OSError as exc:
        raise ReloadError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        last = lines[-1][:300] if lines else "(no output)"
        raise CommandFailed(f"{argv[0]} exited {done.returncode}: {last}", done.returncode)


class ExecNotifyOptions(NotifyConfig):
    """method = "exec": a command (argv list) the server's reload is done with."""

    command: tuple[str, ...] = Field(min_length=1)


class ExecNotifier:
    def __init__(self, config: ExecNotifyOptions) -> None:
        self._config = config

    def notify(self, target: ReloadTarget, cancel: CancelToken) -> None:
        run_command(self._config.command, target, self._config.timeout, cancel)


METHOD = Method(ExecNotifyOptions, ExecNotifier)
