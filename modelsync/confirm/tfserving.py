"""Confirm through TensorFlow Serving's REST model status (GET /v1/models/<name>).

The answer is {"model_version_status": [{"version": "3", "state": "AVAILABLE",
"status": {"error_code": "OK", "error_message": ""}}, ...]}: the version must reach
AVAILABLE; an error_code other than OK, or END without ever being available, fails.
"""

from __future__ import annotations

import json
from typing import Any

from modelsync.cancel import CancelToken
from modelsync.config import ConfirmConfig
from modelsync.confirm import Pending, poll
from modelsync.errors import ReloadError
from modelsync.notify.http import http_call
from modelsync.reload import ReloadTarget, render

__all__ = ["TfServingConfirmer", "version_status"]


def version_status(doc: Any, version: int) -> dict[str, Any] | None:
    """The status entry of ``version`` in a model status answer, or None."""
    entries = doc.get("model_version_status") if isinstance(doc, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("version")) == str(version):
            return entry
    return None


class TfServingConfirmer:
    def __init__(self, config: ConfirmConfig) -> None:
        self._config = config

    def confirm(self, target: ReloadTarget, cancel: CancelToken) -> None:
        url = render(self._config.url or "", target)

        def check() -> None:
            try:
                status, body = http_call("GET", url, None, max(1.0, self._config.period * 5))
            except ReloadError as exc:
                raise Pending(str(exc)) from exc
            try:
                doc = json.loads(body)
            except ValueError as exc:
                raise Pending(f"HTTP {status}, not JSON") from exc
            entry = version_status(doc, target.version)
            if entry is None:
                raise Pending(f"HTTP {status}, version {target.version} not listed yet")
            state = entry.get("state")
            detail = entry.get("status") or {}
            code = detail.get("error_code", "OK") if isinstance(detail, dict) else "OK"
            if code not in ("OK", 0, None, ""):
                message = detail.get("error_message", "") if isinstance(detail, dict) else ""
                raise ReloadError(
                    f"server failed to load version {target.version}: {code}: {message}"[:500]
                )
            if state == "AVAILABLE":
                return
            if state == "END":
                raise ReloadError(f"server ended version {target.version} without serving it")
            raise Pending(f"state {state}")

        poll(check, self._config, cancel, url)
