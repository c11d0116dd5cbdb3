"""modelsync.httpintake: a BoundedServer with a handler of its own, over real sockets.

The admin endpoint's probes under slow and flooding clients are tested through the
admin server (tests/test_admin.py); here, what the intake itself promises a handler:
exactly the announced body and nothing more, a bare-LF header parsed as http.client
parses it, a 503 at once when every slot is taken, and threads that sleep while no
client comes, yet drop a silent client at its deadline and stop at once.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from modelsync.httpintake import MAX_CONNECTIONS, BoundedHandler, BoundedServer, content_length
from tests.helpers import thread_wakeups


class _Echo(BoundedHandler):
    """Answers with the body it was given; ``/wait`` holds its slot until released."""

    release = threading.Event()
    holding: list[int] = []

    def do_POST(self) -> None:
        length = content_length(self.headers.get("Content-Length")) or 0
        body = self.rfile.read(length)
        # What the intake hands on ends with the announced body: a read past it must
        # see end of file at once, not wait on the client's socket.
        after = self.rfile.read(10)
        reply = body + b"|" + after
        if self.path == "/wait":
            self.holding.append(1)
            self.release.wait(10)
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


@pytest.fixture
def server() -> Iterator[BoundedServer]:
    _Echo.release.clear()
    _Echo.holding.clear()
    bounded = BoundedServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=bounded.serve_forever, name="intake-accept", daemon=True)
    thread.start()
    try:
        yield bounded
    finally:
        _Echo.release.set()
        bounded.shutdown()
        bounded.server_close()


def _exchange(port: int, request: bytes, linger: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request + linger)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_handler_gets_the_announced_body_and_nothing_after_it(
    server: BoundedServer,
) -> None:
    """Bytes a client sends past its Content-Length never reach the handler: its read
    beyond the body returns end of file at once."""
    port = server.server_address[1]
    answer = _exchange(
        port, b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", linger=b"EXTRA-BYTES"
    )
    assert answer.startswith(b"HTTP/1.0 200 ")
    assert answer.endswith(b"\r\n\r\nhello|")


def test_a_header_ended_by_bare_newlines_is_taken_as_http_client_takes_it(
    server: BoundedServer,
) -> None:
    """A request whose lines end in LF alone (which http.client accepts) is complete at
    its empty line, with its body: not held until the deadline."""
    port = server.server_address[1]
    started = time.monotonic()
    answer = _exchange(port, b"POST /echo HTTP/1.0\ncontent-length: 3\n\nabc")
    assert time.monotonic() - started < 1.0
    assert answer.endswith(b"\r\n\r\nabc|")


def test_a_request_past_every_slot_is_answered_503_at_once(server: BoundedServer) -> None:
    """With MAX_CONNECTIONS handlers busy, the next complete request is answered 503 with
    Retry-After at once; once a slot frees, requests are served again."""
    port = server.server_address[1]
    request = b"POST /wait HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"
    holders = [
        threading.Thread(target=_exchange, args=(port, request)) for _ in range(MAX_CONNECTIONS)
    ]
    for thread in holders:
        thread.start()
    deadline = time.monotonic() + 10
    while len(_Echo.holding) < MAX_CONNECTIONS:
        assert time.monotonic() < deadline, f"only {len(_Echo.holding)} slots taken"
        time.sleep(0.05)
    started = time.monotonic()
    busy = _exchange(port, b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\ny")
    assert time.monotonic() - started < 1.0
    assert busy.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1" in busy
    _Echo.release.set()
    for thread in holders:
        thread.join(10)
    assert _exchange(port, b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nz").endswith(
        b"\r\n\r\nz|"
    )


def test_a_full_pending_pool_drops_its_oldest_not_the_newcomer(server: BoundedServer) -> None:
    """MAX_PENDING idle connections (red team round 4b: reopened as soon as dropped, they
    kept every probe out): a new complete request is still answered, and the oldest
    idle connection is the one closed."""
    from modelsync.httpintake import MAX_PENDING

    port = server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(MAX_PENDING)]
    try:
        time.sleep(0.5)  # all accepted and pending
        for _ in range(3):
            started = time.monotonic()
            answer = _exchange(port, b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nok")
            assert time.monotonic() - started < 1.0
            assert answer.endswith(b"\r\n\r\nok|")
        idle[0].settimeout(2)
        assert idle[0].recv(1) == b""  # closed by the server
    finally:
        for sock in idle:
            sock.close()


def test_an_idle_server_sleeps_until_a_client_comes(server: BoundedServer) -> None:
    """With no client, neither the accept loop nor the request reader wakes (they
    turned 2 and 10 times a second, on a daemon idle for days: CPU on every host of a
    fleet); a request is still answered at once, and shutdown returns at once."""
    time.sleep(0.3)  # both threads reached their wait
    before = {name: thread_wakeups(name) for name in ("intake-accept", "admin-headers")}
    time.sleep(2.0)
    after = {name: thread_wakeups(name) for name in ("intake-accept", "admin-headers")}
    assert after == before
    started = time.monotonic()
    answer = _exchange(
        server.server_address[1], b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert answer.endswith(b"\r\n\r\nhi|")
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    server.shutdown()
    assert time.monotonic() - started < 0.5
    assert not [t for t in threading.enumerate() if t.name == "intake-accept" and t.is_alive()]


def test_a_silent_client_is_dropped_at_its_deadline_by_a_sleeping_reader(
    server: BoundedServer,
) -> None:
    """The reader sleeps until the oldest pending request's deadline: a connection
    that sends nothing, arriving while nothing else is pending, is still closed when
    REQUEST_TIMEOUT has passed, not left until another client wakes the reader."""
    from modelsync.httpintake import REQUEST_TIMEOUT

    time.sleep(0.3)
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        waited = time.monotonic() - started
    assert REQUEST_TIMEOUT - 0.2 < waited < REQUEST_TIMEOUT + 1.0, waited


def test_shutdown_before_the_loop_runs_returns_at_once() -> None:
    """shutdown() of a server whose loop never started does not wait for it (the
    daemon stops its admin server on every road out, including before it started)."""
    bounded = BoundedServer(("127.0.0.1", 0), _Echo)
    try:
        started = time.monotonic()
        bounded.shutdown()
        assert time.monotonic() - started < 0.5
    finally:
        bounded.server_close()


def test_the_loop_run_again_after_a_shutdown_sleeps_and_serves() -> None:
    """A shutdown's wake-up is consumed: the loop started again on the same server
    neither spins on it nor misses a client."""
    bounded = BoundedServer(("127.0.0.1", 0), _Echo)
    try:
        first = threading.Thread(target=bounded.serve_forever, name="intake-first", daemon=True)
        first.start()
        time.sleep(0.2)
        bounded.shutdown()
        first.join(2)
        assert not first.is_alive()
        again = threading.Thread(target=bounded.serve_forever, name="intake-accept", daemon=True)
        again.start()
        time.sleep(0.3)
        before = thread_wakeups("intake-accept")
        time.sleep(1.0)
        assert thread_wakeups("intake-accept") == before
        answer = _exchange(
            bounded.server_address[1], b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"
        )
        assert answer.endswith(b"\r\n\r\nok|")
        bounded.shutdown()
        again.join(2)
        assert not again.is_alive()
    finally:
        bounded.server_close()
