"""systemd's sd_notify protocol: datagrams to $NOTIFY_SOCKET; silent when it is unset.

A failure to notify is logged once and never raised: a daemon must not die because
its supervisor's socket went away.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

import structlog

__all__ = ["SystemdNotifier"]


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract socket: a leading NUL byte on Linux.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog_for_us = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval = int(usec) / 1e6 if watchdog_for_us else None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True if it was delivered."""
        if not self._address:
            return False
        try:
            # Non-blocking: a supervisor whose socket queue is full must not freeze the
            # main loop (SIGTERM handling included); the datagram is dropped instead.
            kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            with socket.socket(socket.AF_UNIX, kind) as sock:
                sock.connect(self._address)
                sock.send("\n".join(lines).encode())
            return True
        except OSError as exc:
            if not self._warned:
                structlog.get_logger().warning("sd_notify failed", error=str(exc))
                self._warned = True
            return False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def keepalive(self, stopping: threading.Event, heartbeat: Callable[[], float]) -> None:
        """WATCHDOG=1 at a third of systemd's period, for as long as the loop whose last
        turn ``heartbeat`` gives (time.monotonic) turns; returns when ``stopping`` is set
        (at once without a watchdog)."""
        period = self.watchdog_interval
        if period is None:
            return
        while not stopping.wait(period / 3):
            if time.monotonic() - heartbeat() < period:
                self.watchdog()
