"""Confirm through an HTTP endpoint that answers 2xx (optionally naming the version).

Any other answer means "not yet", except the statuses listed in ``fail_status``,
which mean the server could not load it; the server's own words are kept either way.
"""

from __future__ import annotations

from modelsync.config import ConfirmConfig
from modelsync.confirm import ask
from modelsync.reload import (
    Probe,
    ProbeState,
    ReloadTarget,
    parse_json,
    render,
    server_words,
)

__all__ = ["HttpProber"]


class HttpProber:
    def __init__(self, config: ConfirmConfig) -> None:
        self._config = config

    def probe(self, target: ReloadTarget, timeout: float) -> Probe:
        url = render(self._config.url or "", target)
        answer = ask("GET", url, None, timeout)
        if isinstance(answer, Probe):
            return answer
        status, body = answer
        if status in self._config.fail_status:
            return Probe(ProbeState.FAILED, f"HTTP {status}: {server_words(body)}")
        if not 200 <= status < 300:
            return Probe(ProbeState.LOADING, f"HTTP {status}: {server_words(body)}")
        field = self._config.json_field
        if field is None:
            return Probe(ProbeState.LOADED)
        try:
            value = parse_json(body).get(field)
        except (ValueError, AttributeError):
            return Probe(ProbeState.LOADING, f"answer is not a JSON object with {field!r}")
        if str(value) != str(target.version):
            return Probe(ProbeState.ABSENT, f"{field} is {value!r}")
        return Probe(ProbeState.LOADED)
