"""Confirm through TensorFlow Serving's REST model status (GET /v1/models/<name>).

The answer is {"model_version_status": [{"version": "3", "state": "AVAILABLE",
"status": {"error_code": "OK", "error_message": ""}}, ...]}: the version must reach
AVAILABLE; an error_code other than OK fails. END with OK is a version the server
unloaded in order (TF Serving reports a failed load with an error code): after a
rollback the previous revision reads END until the server's next scan loads it again,
so it is waited for like LOADING, within the confirm timeout.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from modelsync.cancel import CancelToken
from modelsync.confirm import ConfirmConfig, ask
from modelsync.methods import Method
from modelsync.reload import Probe, ProbeState, ReloadTarget, parse_json, render

__all__ = ["METHOD", "TfServingOptions", "TfServingProber", "version_status"]


class TfServingOptions(ConfirmConfig):
    """method = "tfserving": TF Serving's REST model status."""

    # http://host:8501/v1/models/{model}
    url: str = Field(pattern=r"^https?://[^\s]+$")


def version_status(doc: Any, version: int) -> dict[str, Any] | None:
    """The status entry of ``version`` in a model status answer, or None."""
    entries = doc.get("model_version_status") if isinstance(doc, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("version")) == str(version):
            return entry
    return None


class TfServingProber:
    def __init__(self, url_template: str) -> None:
        self._url = url_template

    def probe(self, target: ReloadTarget, timeout: float, cancel: CancelToken) -> Probe:
        url = render(self._url, target)
        answer = ask("GET", url, None, timeout, cancel)
        if isinstance(answer, Probe):
            return answer
        status, body = answer
        try:
            doc = parse_json(body)
        except ValueError:
            return Probe(ProbeState.LOADING, f"HTTP {status}, not JSON")
        entry = version_status(doc, target.version)
        if entry is None:
            return Probe(ProbeState.ABSENT, f"HTTP {status}, version {target.version} not listed")
        state = entry.get("state")
        detail = entry.get("status") or {}
        code = detail.get("error_code", "OK") if isinstance(detail, dict) else "OK"
        if code not in ("OK", 0, None, ""):
            message = detail.get("error_message", "") if isinstance(detail, dict) else ""
            return Probe(ProbeState.FAILED, f"{code}: {message}"[:500])
        if state == "AVAILABLE":
            return Probe(ProbeState.LOADED)
        if state == "END":
            return Probe(ProbeState.LOADING, f"version {target.version} unloaded; not yet again")
        return Probe(ProbeState.LOADING, f"state {state}")


METHOD = Method(TfServingOptions, lambda config: TfServingProber(config.url))
