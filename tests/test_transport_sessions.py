"""requests Sessions wired into the deadline layer (transport/sessions.py): a mounted
session's connects and reads end when the pass's token fires, and azure-core's
waits between retries end with it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from modelsync.cancel import CancelToken
from modelsync.errors import Cancelled
from modelsync.transport.deadline import Deadlines
from modelsync.transport.sessions import azure_transport, mount


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback server that accepts connections and never answers; its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_mounted_session_read_ends_at_the_deadline(silent_server: int) -> None:
    """A GET to a server that never answers, with a 30 s read timeout, ends as
    Cancelled within about a second of a 1 s deadline."""
    deadlines = Deadlines()
    session = requests.Session()
    mount(deadlines, session, 2)
    token = CancelToken(deadline=time.monotonic() + 1.0)
    started = time.monotonic()
    with pytest.raises(Cancelled, match="pass deadline exceeded"), deadlines.deadline(token):
        session.get(f"http://127.0.0.1:{silent_server}/o", timeout=30)
    took = time.monotonic() - started
    assert 0.9 <= took < 2.5, took
    session.close()


def test_azure_retry_waits_end_at_the_deadline() -> None:
    """azure-core's sleep between retries (seconds long) returns as Cancelled when
    the calling thread's deadline passes, and sleeps in full without one."""
    deadlines = Deadlines()
    session = requests.Session()
    mount(deadlines, session, 2)
    transport = azure_transport(deadlines, session)
    token = CancelToken(deadline=time.monotonic() + 0.5)
    started = time.monotonic()
    with pytest.raises(Cancelled), deadlines.deadline(token):
        transport.sleep(30)
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    transport.sleep(0.2)
    assert time.monotonic() - started >= 0.2
    session.close()
