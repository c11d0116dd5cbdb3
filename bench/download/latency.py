"""A TCP proxy that delays every request, so that loopback answers like a real store.

Real stores answer a GET's first byte in 20-50 ms; loopback in 0.1 ms, where CPU
alone decides and concurrency hardly matters. The proxy holds each chunk a client
sends for ``delay`` seconds before passing it on (a GET's head is one chunk), so
every answer starts ``delay`` after its request; the bytes back flow at once."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class DelayProxy:
    """Loopback proxy to ``127.0.0.1:upstream_port``; ``endpoint`` is its own URL."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closed = threading.Event()
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True, name="delay-accept").start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delayed: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(256 * 1024):
                if delayed:
                    time.sleep(self._delay)
                dst.sendall(chunk)
        # One side closed: close both, so the other pump ends too.
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
