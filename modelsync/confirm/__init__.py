"""Confirmers: wait until the server reports the version healthy (http, tfserving, exec)."""

from __future__ import annotations

import time
from collections.abc import Callable

from modelsync.cancel import CancelToken
from modelsync.config import ConfirmConfig
from modelsync.errors import ReloadError
from modelsync.reload import Confirmer, ReloadTarget

__all__ = ["NoConfirm", "build_confirmer", "poll"]


class NoConfirm:
    """Trust the notify step (or a server that is not watched)."""

    def confirm(self, target: ReloadTarget, cancel: CancelToken) -> None:
        return None


class Pending(Exception):
    """Not yet: the server has not reached the version; ask again after the period."""


def poll(check: Callable[[], None], config: ConfirmConfig, cancel: CancelToken, what: str) -> None:
    """Call ``check`` every ``period`` until it returns, raises ReloadError, or times out.

    ``check`` raises Pending (with the latest answer) to be asked again.
    """
    deadline = time.monotonic() + config.timeout
    while True:
        try:
            check()
            return
        except Pending as exc:
            last = str(exc)
        left = deadline - time.monotonic()
        if left <= 0:
            raise ReloadError(f"{what}: not confirmed within {config.timeout:g}s; last: {last}")
        cancel.wait(min(config.period, left))


def build_confirmer(config: ConfirmConfig) -> Confirmer:
    if config.method == "http":
        from modelsync.confirm.http import HttpConfirmer

        return HttpConfirmer(config)
    if config.method == "tfserving":
        from modelsync.confirm.tfserving import TfServingConfirmer

        return TfServingConfirmer(config)
    if config.method == "exec":
        from modelsync.confirm.exec import ExecConfirmer

        return ExecConfirmer(config)
    return NoConfirm()
