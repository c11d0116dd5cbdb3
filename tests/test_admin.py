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

    from modelsync.httpintake import IDLE_TIMEOUT, MAX_CONNECTIONS

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
    once REQUEST_TIMEOUT has passed (a total per header, not per byte)."""
    import socket
    import threading
    import time

    from modelsync.httpintake import REQUEST_TIMEOUT

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
        time.sleep(REQUEST_TIMEOUT + 1)
        assert len(dropped_after) == 40
        assert max(dropped_after) < REQUEST_TIMEOUT + 1.5
    finally:
        stop.set()
        for thread in drippers:
            thread.join(5)
        server.stop()


def _webhook_server(view: FakeView) -> AdminServer:
    """An admin endpoint with the MLflow webhook on (no model follows any alias)."""
    from modelsync.webhooks import MlflowWebhook

    hook = MlflowWebhook(WEBHOOK_SECRET, lambda: [], lambda names: list(names))
    return AdminServer(("127.0.0.1", 0), view, CollectorRegistry(), None, hook)


WEBHOOK_SECRET = b"a-webhook-secret-of-32-bytes-..."


def _signed_delivery(body: bytes) -> bytes:
    """A whole POST /webhooks/mlflow request for ``body``, signed with WEBHOOK_SECRET."""
    import time

    from modelsync.webhooks import sign

    stamp = str(int(time.time()))
    head = (
        "POST /webhooks/mlflow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-MLflow-Delivery-Id: d-1\r\nX-MLflow-Timestamp: {stamp}\r\n"
        f"X-MLflow-Signature: {sign(WEBHOOK_SECRET, 'd-1', stamp, body)}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _answer(sock: Any) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _trickle(port: int, head: bytes, every: float, stop: Any, dropped: list[float]) -> None:
    """Connect, send ``head`` whole, then one body byte every ``every`` seconds until the
    server closes the connection (its time since connect goes to ``dropped``)."""
    import socket
    import time

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    started = time.monotonic()
    sock.settimeout(every)
    try:
        sock.sendall(head)
        while not stop.is_set():
            try:
                if not sock.recv(1024):
                    break
            except TimeoutError:
                sock.sendall(b"{")
    except OSError:
        pass
    finally:
        dropped.append(time.monotonic() - started)
        sock.close()


@pytest.mark.parametrize(
    "head",
    [
        b"POST /webhooks/mlflow HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n",
        b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
        b"GET /status HTTP/1.0\ncontent-length: 10\n\n",
    ],
    ids=["webhook-body", "sync-body", "get-with-body"],
)
def test_probes_answer_while_40_clients_trickle_a_request_body(head: bytes) -> None:
    """40 unauthenticated clients send a whole request header announcing a body, then
    trickle the body a byte at a time (red team finding 11, any endpoint): every
    /healthz and /readyz probe meanwhile answers 200 at once, and each trickler is
    dropped once REQUEST_TIMEOUT has passed since it connected (one deadline for the
    whole request, not a per-recv timeout a trickle always meets)."""
    import threading
    import time

    from modelsync.httpintake import REQUEST_TIMEOUT

    view = FakeView()
    view.ready = []
    server = _webhook_server(view)
    server.start()
    stop = threading.Event()
    dropped: list[float] = []
    tricklers = [
        threading.Thread(target=_trickle, args=(server.port, head, 0.3, stop, dropped))
        for _ in range(40)
    ]
    try:
        for thread in tricklers:
            thread.start()
        time.sleep(0.5)
        statuses = []
        for _ in range(6):
            for path in ("/healthz", "/readyz"):
                started = time.monotonic()
                statuses.append(_call(server.port, "GET", path)[0])
                assert time.monotonic() - started < 1.0
            time.sleep(0.2)
        assert statuses == [200] * 12
        for thread in tricklers:
            thread.join(REQUEST_TIMEOUT + 5)
        assert len(dropped) == 40
        assert max(dropped) < REQUEST_TIMEOUT + 1.5
    finally:
        stop.set()
        for thread in tricklers:
            thread.join(5)
        server.stop()


def test_one_deadline_covers_the_header_and_the_body() -> None:
    """A client that drips its header for most of REQUEST_TIMEOUT, then its body, is
    dropped REQUEST_TIMEOUT after it connected: the body gets no fresh deadline."""
    import socket
    import time

    from modelsync.httpintake import REQUEST_TIMEOUT

    server = _webhook_server(FakeView())
    server.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        started = time.monotonic()
        head = b"POST /webhooks/mlflow HTTP/1.1\r\nContent-Length: 100\r\n\r\n"
        step = (REQUEST_TIMEOUT - 0.5) / len(head)
        with sock:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(step)
            sock.settimeout(0.2)
            answer = b""
            while time.monotonic() - started < REQUEST_TIMEOUT + 3:
                try:
                    sock.sendall(b" ")
                    answer = sock.recv(1024)
                    break  # closed (b"") or answered
                except TimeoutError:
                    continue
                except OSError:
                    break
        took = time.monotonic() - started
        assert answer == b""
        assert REQUEST_TIMEOUT - 0.5 <= took < REQUEST_TIMEOUT + 1.0
    finally:
        server.stop()


def test_a_webhook_body_sent_in_parts_within_the_deadline_is_delivered() -> None:
    """A signed delivery of the largest body accepted, its header and body sent apart
    and the body in pieces (all within REQUEST_TIMEOUT), is answered 202: the reader
    collects the body across reads; one byte more than the limit is answered 400."""
    import json as json_module
    import socket
    import time

    from modelsync.webhooks import MAX_BODY_BYTES

    server = _webhook_server(FakeView())
    server.start()
    try:
        data = {"name": "unfollowed", "alias": "champion", "version": "3"}
        doc = {"entity": "model_version_alias", "action": "created", "data": data}
        raw = json_module.dumps(doc).encode()
        body = raw[:-1] + b" " * (MAX_BODY_BYTES - len(raw)) + raw[-1:]
        request = _signed_delivery(body)
        split = request.index(b"\r\n\r\n") + 4
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request[:split])
            for start in range(split, len(request), 16384):
                time.sleep(0.2)
                sock.sendall(request[start : start + 16384])
            answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.0 202 "), answer[:200]
        assert json_module.loads(answer.partition(b"\r\n\r\n")[2])["queued"] == []
        too_big = body + b" "
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(_signed_delivery(too_big)[: split + 1])
            assert _answer(sock).startswith(b"HTTP/1.0 400 ")
    finally:
        server.stop()


def test_bodies_announced_past_the_pending_budget_are_answered_503() -> None:
    """Clients that announce full-size bodies and send none hold at most
    MAX_PENDING_BODY_BYTES of the reader between them: the next one is answered 503
    at once, and the probes (no body) still answer 200."""
    import socket
    import time

    from modelsync.httpintake import MAX_PENDING_BODY_BYTES
    from modelsync.webhooks import MAX_BODY_BYTES

    view = FakeView()
    view.ready = []
    server = _webhook_server(view)
    server.start()
    head = f"POST /webhooks/mlflow HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n"
    holders = []
    try:
        for _ in range(MAX_PENDING_BODY_BYTES // MAX_BODY_BYTES):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(head.encode())
            holders.append(sock)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(head.encode())
            answer = _answer(sock)
            assert time.monotonic() - started < 1.0
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert _call(server.port, "GET", "/healthz")[0] == 200
        assert _call(server.port, "GET", "/readyz")[0] == 200
    finally:
        for sock in holders:
            sock.close()
        server.stop()
