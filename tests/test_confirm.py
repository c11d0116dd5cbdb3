"""Each confirm method against a real HTTP server or command: three outcomes, timeouts."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import ConfirmConfig
from modelsync.confirm import build_prober, wait_loaded
from modelsync.errors import Cancelled, LoadFailed, LoadUnknown
from modelsync.reload import ReloadTarget
from tests.daemonproc import free_port
from tests.httpstub import http_stub

TARGET = ReloadTarget("ranker", 7, Path("/models/ranker/7"))


def confirm(config: ConfirmConfig, token: CancelToken | None = None, **kwargs: bool) -> None:
    """Wait for the verdict on TARGET with the prober of ``config``."""
    prober = build_prober(config)
    assert prober is not None
    wait_loaded(prober, TARGET, config, token or CancelToken(), **kwargs)


def _status(*entries: tuple[str, str, str, str]) -> bytes:
    return json.dumps(
        {
            "model_version_status": [
                {"version": v, "state": s, "status": {"error_code": c, "error_message": m}}
                for v, s, c, m in entries
            ]
        }
    ).encode()


def test_tfserving_waits_for_available() -> None:
    """LOADING, then AVAILABLE: confirmed after a few polls."""
    answers = iter(
        [
            _status(("6", "AVAILABLE", "OK", "")),
            _status(("7", "LOADING", "OK", ""), ("6", "AVAILABLE", "OK", "")),
        ]
    )

    def answer(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        return 200, next(answers, _status(("7", "AVAILABLE", "OK", ""), ("6", "END", "OK", "")))

    with http_stub(answer) as (url, seen):
        config = ConfirmConfig.of(method="tfserving", url=url + "/v1/models/{model}", period=0.05)
        confirm(config)
    assert len(seen) == 3 and seen[0][1] == "/v1/models/ranker"


def test_tfserving_error_fails_at_once() -> None:
    """An error_code other than OK fails at once with the server's words."""
    with http_stub(lambda m, p, b: (200, _status(("7", "END", "UNKNOWN", "Data loss: bad")))) as (
        url,
        _,
    ):
        config = ConfirmConfig.of(method="tfserving", url=url, period=0.05, timeout=30)
        started = time.monotonic()
        with pytest.raises(LoadFailed, match="UNKNOWN: Data loss: bad"):
            confirm(config)
        assert time.monotonic() - started < 5


def test_tfserving_unloaded_version_is_waited_for() -> None:
    """END with OK (a version unloaded in order, e.g. the previous revision after a
    rollback) is waited for until the server loads it again, not failed."""
    answers = iter([_status(("7", "END", "OK", ""), ("8", "END", "OK", ""))] * 3)

    def answer(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        return 200, next(answers, _status(("7", "AVAILABLE", "OK", ""), ("8", "END", "OK", "")))

    with http_stub(answer) as (url, seen):
        confirm(ConfirmConfig.of(method="tfserving", url=url, period=0.05, timeout=30))
    assert len(seen) == 4


def test_dead_server_times_out_and_stop_interrupts() -> None:
    """Nothing listening: keep asking until the timeout; a stop request ends the wait."""
    config = ConfirmConfig.of(
        method="tfserving", url=f"http://127.0.0.1:{free_port()}/", period=0.05, timeout=0.5
    )
    with pytest.raises(LoadUnknown, match=r"not confirmed within 0\.5s.*connection refused"):
        confirm(config)
    token = CancelToken()
    token.stop_event.set()
    with pytest.raises(Cancelled):
        confirm(config.model_copy(update={"timeout": 60}), token)


def test_http_json_field_must_equal_the_version() -> None:
    """2xx alone is not enough when json_field is set: the field must name the version."""
    answers = iter([(200, b'{"version": 6}'), (503, b"{}")])

    def answer(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        return next(answers, (200, b'{"version": "7"}'))

    with http_stub(answer) as (url, seen):
        confirm(ConfirmConfig.of(method="http", url=url, json_field="version", period=0.05))
    assert len(seen) == 3
    with (
        http_stub(lambda m, p, b: (200, b'{"version": 6}')) as (url, _),
        pytest.raises(LoadUnknown, match="version is 6"),
    ):
        confirm(
            ConfirmConfig.of(method="http", url=url, json_field="version", period=0.05, timeout=0.3)
        )


def test_exec_until_exit_0(tmp_path: Path) -> None:
    """The command is run until it exits 0; its environment names the revision."""
    marker = tmp_path / "count"
    script = (
        f"import os, pathlib, sys; p = pathlib.Path({str(marker)!r}); "
        "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
        "sys.exit(0 if n >= 3 and os.environ['MODELSYNC_VERSION'] == '7' else 1)"
    )
    confirm(ConfirmConfig.of(method="exec", command=(sys.executable, "-c", script), period=0.05))
    assert marker.read_text() == "3"


def test_exec_exit_3_is_the_servers_verdict() -> None:
    """Exit 3 means the server could not load it: fails at once with the command's words."""
    script = "import sys; sys.stderr.write('model.onnx: bad opset\\n'); sys.exit(3)"
    started = time.monotonic()
    with pytest.raises(LoadFailed, match="bad opset"):
        confirm(ConfirmConfig.of(method="exec", command=(sys.executable, "-c", script), timeout=30))
    assert time.monotonic() - started < 5


def test_http_keeps_the_servers_words_and_fails_fast_on_fail_status() -> None:
    """A non-2xx answer's body is kept in the reason; a fail_status answer fails at once."""
    body = b'{"error": "load failed for model \'ranker\': version 7: bad weights"}'
    with http_stub(lambda m, p, b: (400, body)) as (url, _):
        with pytest.raises(LoadUnknown, match=r"HTTP 400: load failed .* bad weights"):
            confirm(ConfirmConfig.of(method="http", url=url, period=0.05, timeout=0.3))
        started = time.monotonic()
        with pytest.raises(LoadFailed, match="bad weights"):
            confirm(ConfirmConfig.of(method="http", url=url, fail_status=(400,), timeout=30))
        assert time.monotonic() - started < 5


def test_a_server_answering_absurdly_nested_json_is_not_a_crash() -> None:
    """JSON nested beyond the parser's limit is "not JSON" (issue 11 finding 5): the
    confirm ends as unknown at its timeout, it does not raise RecursionError."""
    body = b"[" * 200_000 + b"]" * 200_000
    with http_stub(lambda m, p, b: (200, body)) as (url, _):
        for method in ("http", "tfserving"):
            extra = {"json_field": "v"} if method == "http" else {}
            config = ConfirmConfig.of(method=method, url=url, period=0.05, timeout=0.3, **extra)
            with pytest.raises(LoadUnknown):
                confirm(config)


def test_a_long_wait_for_the_servers_confirmation_is_said_once(_quiet_logs: Any) -> None:
    """Red team round 4b: a server answering 503 for 15 s left no line after
    `activated`. Past two seconds the wait is said once, with the version, how long it
    may still last and the server's last answer; the revision is confirmed after."""
    started = time.monotonic()

    def answer(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        if time.monotonic() - started < 2.6:
            return 503, b"loading"
        return 200, _status(("7", "AVAILABLE", "OK", ""))

    with http_stub(answer) as (url, _seen):
        confirm(ConfirmConfig.of(method="tfserving", url=url, period=0.1, timeout=30))
    events = [json.loads(line) for line in _quiet_logs.getvalue().splitlines()]
    said = [e for e in events if e["event"] == "waiting for the server to confirm the revision"]
    assert len(said) == 1, events
    assert said[0]["version"] == 7 and 20 < said[0]["up_to_s"] <= 28
    assert "503" in said[0]["last"]
