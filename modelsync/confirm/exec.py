"""Confirm by running a command until it exits 0 (model, version, path in its environment)."""

from __future__ import annotations

from modelsync.cancel import CancelToken
from modelsync.config import ConfirmConfig
from modelsync.confirm import Pending, poll
from modelsync.errors import ReloadError
from modelsync.notify.exec import run_command
from modelsync.reload import ReloadTarget

__all__ = ["ExecConfirmer"]


class ExecConfirmer:
    def __init__(self, config: ConfirmConfig) -> None:
        assert config.command
        self._config = config

    def confirm(self, target: ReloadTarget, cancel: CancelToken) -> None:
        command = self._config.command
        assert command

        def check() -> None:
            try:
                run_command(command, target, max(1.0, self._config.timeout))
            except ReloadError as exc:
                raise Pending(str(exc)) from exc

        poll(check, self._config, cancel, command[0])
