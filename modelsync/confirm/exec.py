"""Confirm by running a command (model, version, path in its environment).

Exit 0: the server serves the version. Exit 3: the server could not load it (the
command's last stderr line is kept as the reason). Anything else: not yet.
"""

from __future__ import annotations

from pydantic import Field

from modelsync.cancel import CancelToken
from modelsync.confirm import ConfirmConfig
from modelsync.errors import ReloadError
from modelsync.methods import Method
from modelsync.reload import CommandFailed, Probe, ProbeState, ReloadTarget, run_command

__all__ = ["FAILED_EXIT", "METHOD", "ExecConfirmOptions", "ExecProber"]

FAILED_EXIT = 3


class ExecConfirmOptions(ConfirmConfig):
    """method = "exec": a command whose exit status is the answer."""

    command: tuple[str, ...] = Field(min_length=1)


class ExecProber:
    def __init__(self, config: ExecConfirmOptions) -> None:
        self._command = config.command

    def probe(self, target: ReloadTarget, timeout: float, cancel: CancelToken) -> Probe:
        try:
            run_command(self._command, target, timeout, cancel)
        except CommandFailed as exc:
            state = ProbeState.FAILED if exc.returncode == FAILED_EXIT else ProbeState.LOADING
            return Probe(state, str(exc))
        except ReloadError as exc:  # could not run it (yet): not a verdict
            return Probe(ProbeState.LOADING, str(exc))
        return Probe(ProbeState.LOADED)


METHOD = Method(ExecConfirmOptions, ExecProber)
