"""Confirm through an HTTP endpoint that answers 2xx (optionally naming the version)."""

from __future__ import annotations

import json

from modelsync.cancel import CancelToken
from modelsync.config import ConfirmConfig
from modelsync.confirm import Pending, poll
from modelsync.errors import ReloadError
from modelsync.notify.http import http_call
from modelsync.reload import ReloadTarget, render

__all__ = ["HttpConfirmer"]


class HttpConfirmer:
    def __init__(self, config: ConfirmConfig) -> None:
        self._config = config

    def confirm(self, target: ReloadTarget, cancel: CancelToken) -> None:
        url = render(self._config.url or "", target)
        field = self._config.json_field

        def check() -> None:
            try:
                status, body = http_call("GET", url, None, max(1.0, self._config.period * 5))
            except ReloadError as exc:
                raise Pending(str(exc)) from exc
            if not 200 <= status < 300:
                raise Pending(f"HTTP {status}")
            if field is None:
                return
            try:
                value = json.loads(body).get(field)
            except (ValueError, AttributeError) as exc:
                raise Pending(f"answer is not a JSON object with {field!r}") from exc
            if str(value) != str(target.version):
                raise Pending(f"{field} is {value!r}")

        poll(check, self._config, cancel, url)
