"""Run a command to tell the server (model, version and path in its environment)."""

from __future__ import annotations

from pydantic import Field

from modelsync.cancel import CancelToken
from modelsync.methods import Method
from modelsync.notify import NotifyConfig
from modelsync.reload import ReloadTarget, run_command

__all__ = ["METHOD", "ExecNotifier", "ExecNotifyOptions"]


class ExecNotifyOptions(NotifyConfig):
    """method = "exec": a command (argv list) the server's reload is done with."""

    command: tuple[str, ...] = Field(min_length=1)


class ExecNotifier:
    def __init__(self, config: ExecNotifyOptions) -> None:
        self._config = config

    def notify(self, target: ReloadTarget, cancel: CancelToken) -> None:
        run_command(self._config.command, target, self._config.timeout, cancel)


METHOD = Method(ExecNotifyOptions, ExecNotifier)
