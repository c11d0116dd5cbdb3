"""Confirm through an HTTP endpoint that answers 2xx (optionally naming the version).

Any other answer means "not yet", except the statuses listed in ``fail_status``,
which mean the server could not load it; the server's own words are kept either way.
"""

from __future__ import annotations

from pydantic import Field

from modelsync.cancel import CancelToken
from modelsync.confirm import ConfirmConfig, ask
from modelsync.methods import Method
from modelsync.reload import (
    Probe,
    ProbeState,
    ReloadTarget,
    parse_json,
    render,
    server_words,
)

__all__ = ["METHOD", "HttpConfirmOptions", "HttpProber"]


class HttpConfirmOptions(ConfirmConfig):
    """method = "http": GET a URL until it answers 2xx (naming the version)."""

    # {model} and {version} are substituted.
    url: str = Field(pattern=r"^https?://[^\s]+$")
    # This JSON field of the answer must equal the version.
    json_field: str | None = None
    # Answers with these statuses mean the server could not load the version (any
    # other non-2xx means "not yet").
    fail_status: tuple[int, ...] = ()


class HttpProber:
    def __init__(self, config: HttpConfirmOptions) -> None:
        self._config = config

    def probe(self, target: ReloadTarget, timeout: float, cancel: CancelToken) -> Probe:
        url = render(self._config.url, target)
        answer = ask("GET", url, None, timeout, cancel)
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


METHOD = Method(HttpConfirmOptions, HttpProber)
