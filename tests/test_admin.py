from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from modelsync.admin import AdminServer
from modelsync.errors import ConfigError


class FakeView:
    def __init__(self) -> None:
        self.queued: list[list[str] | None] = []
        self.ready: list[str] = ["m: no active version"]

    def alive(self) -> bool:
        return True

    def not_ready(self) -> list[str]:
        return self.ready

    def degraded(self) -> list[str]:
        return []

    def status(self) -> dict[str, Any]:
        return {"models": []}

    def request_sync(self, models: list[str] | None) -> list[str]:
        if models and "nope" in models:
            raise KeyError("nope")
        self.queued.append(models)
        return models or ["m"]


def _call(
    port: int, method: str, path: str, token: str | None = None, scheme: str = "Bearer "
) -> tuple[int, Any]:
    headers = {"Authorization": f"{scheme}{token}"} if token else {}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


def test_routes_and_token() -> None:
    """Each route answers as specified; POST /sync needs the token when one is set."""
    view = FakeView()
    registry = CollectorRegistry()
    Counter("demo_thing", "x", registry=registry).inc()
    server = AdminServer(("127.0.0.1", 0), view, registry, token="t0k")
    server.start()
    try:
        port = server.port
        assert _call(port, "GET", "/healthz") == (200, {"alive": True})
        assert _call(port, "GET", "/readyz")[0] == 503
        view.ready = []
        ready = {"ready": True, "not_ready": [], "degraded": []}
        assert _call(port, "GET", "/readyz") == (200, ready)
        status, text = _call(port, "GET", "/metrics")
        assert status == 200 and "demo_thing_total 1.0" in text
        assert _call(port, "GET", "/status") == (200, {"models": []})
        assert _call(port, "POST", "/sync")[0] == 401
        assert _call(port, "POST", "/sync", "t0k", scheme="")[0] == 401  # Bearer required
        assert _call(port, "POST", "/sync", "t0k", scheme="Basic ")[0] == 401
        assert _call(port, "POST", "/sync", "t0k") == (202, {"queued": ["m"]})
        assert _call(port, "POST", "/sync?model=nope", "t0k")[0] == 404
        assert _call(port, "GET", "/sync")[0] == 405
        assert _call(port, "GET", "/nowhere")[0] == 404
        assert view.queued == [None]
    finally:
        server.stop()


def test_busy_port_is_a_config_error() -> None:
    """A listen address already in use is reported as a config error naming admin.listen."""
    first = AdminServer(("127.0.0.1", 0), FakeView(), CollectorRegistry(), None)
    try:
        with pytest.raises(ConfigError, match=r"admin\.listen"):
            AdminServer(("127.0.0.1", first.port), FakeView(), CollectorRegistry(), None)
    finally:
        first.stop()


def test_idle_connections_cannot_take_every_thread() -> None:
    """100 idle connections: the server holds at most MAX_CONNECTIONS threads, drops the
    idle ones after IDLE_TIMEOUT, and answers /healthz again (issue 11 finding 7)."""
    import socket
    import threading
    import time

    from modelsync.admin import IDLE_TIMEOUT, MAX_CONNECTIONS

    server = AdminServer(("127.0.0.1", 0), FakeView(), CollectorRegistry(), token=None)
    server.start()
    before = threading.active_count()
    sockets = []
    try:
        for _ in range(100):
            sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.5)
        assert threading.active_count() - before <= MAX_CONNECTIONS
        deadline = time.monotonic() + IDLE_TIMEOUT + 5
        while True:
            try:
                if _call(server.port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "healthz never answered"
            time.sleep(0.2)
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def test_probes_answer_while_40_clients_drip_their_headers() -> None:
    """40 unauthenticated clients dripping request headers a byte at a time: every
    /healthz and /readyz probe meanwhile answers at once, and each dripper is dropped
    once HEADER_TIMEOUT has passed (a total per header, not per byte)."""
    import socket
    import threading
    import time

    from modelsync.admin import HEADER_TIMEOUT

    view = FakeView()
    view.ready = []
    server = AdminServer(("127.0.0.1", 0), view, CollectorRegistry(), token=None)
    server.start()
    stop = threading.Event()
    dropped_after: list[float] = []

    def drip() -> None:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        started = time.monotonic()
        try:
            for byte in b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                if stop.is_set():
                    return
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            dropped_after.append(time.monotonic() - started)
        finally:
            sock.close()

    drippers = [threading.Thread(target=drip) for _ in range(40)]
    try:
        for thread in drippers:
            thread.start()
        time.sleep(0.5)
        statuses = []
        for _ in range(10):
            for path in ("/healthz", "/readyz"):
                started = time.monotonic()
                statuses.append(_call(server.port, "GET", path)[0])
                assert time.monotonic() - started < 1.0
            time.sleep(0.2)
        assert statuses == [200] * 20
        time.sleep(HEADER_TIMEOUT + 1)
        assert len(dropped_after) == 40
        assert max(dropped_after) < HEADER_TIMEOUT + 1.5
    finally:
        stop.set()
        for thread in drippers:
            thread.join(5)
        server.stop()
