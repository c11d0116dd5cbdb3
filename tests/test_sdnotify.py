from __future__ import annotations

import os
import socket
from pathlib import Path

from modelsync.sdnotify import SystemdNotifier


def test_messages_reach_a_real_socket(tmp_path: Path) -> None:
    """READY, STATUS, WATCHDOG and STOPPING arrive as datagrams; watchdog period is read."""
    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"})
        assert notifier.enabled and notifier.watchdog_interval == 3.0
        notifier.ready("ok")
        notifier.watchdog()
        notifier.stopping()
        assert sock.recv(100) == b"READY=1\nSTATUS=ok"
        assert sock.recv(100) == b"WATCHDOG=1"
        assert sock.recv(100) == b"STOPPING=1\nSTATUS=stopping"


def test_unset_socket_does_nothing_and_dead_socket_never_raises(tmp_path: Path) -> None:
    """Without NOTIFY_SOCKET nothing is sent; a vanished socket is logged, not raised."""
    assert SystemdNotifier({}).send("READY=1") is False
    assert SystemdNotifier({}).watchdog_interval is None
    gone = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert gone.send("READY=1") is False
    other_pid = SystemdNotifier({"NOTIFY_SOCKET": "x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"})
    assert os.getpid() == 1 or other_pid.watchdog_interval is None


def test_a_supervisor_that_stops_reading_never_blocks_us(tmp_path: Path) -> None:
    """Issue 11 (finding 28): the supervisor's socket queue is full and nobody reads it;
    each send returns at once (dropped) instead of blocking the main loop."""
    import socket
    import time

    path = str(tmp_path / "full.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
        started = time.monotonic()
        results = [notifier.send("WATCHDOG=1") for _ in range(200)]
        assert time.monotonic() - started < 2
        assert results[0] is True and results[-1] is False  # the queue filled up


def _pets(sock: socket.socket, seconds: float, beat: list[float] | None = None) -> int:
    """WATCHDOG=1 datagrams received in ``seconds``, refreshing ``beat`` meanwhile."""
    import time

    count, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        if beat is not None:
            beat[0] = time.monotonic()
        try:
            count += sock.recv(100) == b"WATCHDOG=1"
        except TimeoutError:
            continue
    return count


def test_keepalive_pets_the_watchdog_only_while_the_loop_turns(tmp_path: Path) -> None:
    """WATCHDOG=1 at a third of the period while the heartbeat is fresh; none once the
    loop stops turning (systemd then restarts us); returns when told to stop, and at
    once without a watchdog."""
    import threading
    import time

    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(0.05)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "300000"})
        beat = [time.monotonic()]
        stopping = threading.Event()
        thread = threading.Thread(target=notifier.keepalive, args=(stopping, lambda: beat[0]))
        thread.start()
        try:
            assert _pets(sock, 0.5, beat) >= 3
            _pets(sock, 0.4)  # the loop stalls; what was sent before it showed drains
            assert _pets(sock, 0.5) == 0
        finally:
            stopping.set()
            thread.join(2)
        assert not thread.is_alive()
    idle = threading.Thread(
        target=SystemdNotifier({}).keepalive, args=(threading.Event(), time.monotonic)
    )
    idle.start()
    idle.join(1)
    assert not idle.is_alive()
