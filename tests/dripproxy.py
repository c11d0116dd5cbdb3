"""An HTTP proxy (or a stand-alone endpoint) that stalls chosen requests: it drips the
answer one byte every 1-2 s, drips only the body, or never answers at all.

The campaign's deadline trials put it in front of a storage API or use it as a
confirm endpoint: whatever it stalls, a pass must end by its deadline.
"""

from __future__ import annotations

import http.client
import http.server
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.faultproxy import forwarding_handler

__all__ = ["MODES", "DripProxy", "Stall"]

# drip: status line, headers and body, one byte at a time; body: the headers at once,
# then the body one byte at a time; hang: read the request and never answer.
MODES = ("drip", "body", "hang")


@dataclass
class Stall:
    mode: str = "drip"
    # Called with (method, path): True stalls that request.
    match: Callable[[str, str], bool] = lambda _m, _p: True
    # Seconds between two bytes: uniform in this range.
    every: tuple[float, float] = (1.0, 2.0)
    seed: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # clients give up on stalled answers: that is the point


class DripProxy:
    """Forwards to ``upstream_port`` (or answers ``200 {"version": ...}`` itself when
    None) and stalls the requests that ``stall.match`` picks."""

    def __init__(self, upstream_port: int | None, stall: Stall | None = None) -> None:
        self.upstream_port = upstream_port
        self.stall = stall
        self.stalled: list[str] = []
        self.seen: list[str] = []
        self.answer = b'{"version": 0}'
        self._stop = threading.Event()
        self.server = _Server(("127.0.0.1", 0), forwarding_handler(self._serve))
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DripProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def _upstream(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> bytes:
        if self.upstream_port is None:
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.answer)}\r\n\r\n"
            ).encode()
            return head + self.answer
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        headers = {
            k: v
            for k, v in handler.headers.items()
            if k.lower() not in {"connection", "keep-alive", "transfer-encoding"}
        }
        upstream.request(handler.command, handler.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        lines = [f"HTTP/1.1 {response.status} {response.reason}"]
        for key, value in response.getheaders():
            if key.lower() not in {
                "connection",
                "keep-alive",
                "transfer-encoding",
                "content-length",
            }:
                lines.append(f"{key}: {value}")
        declared = response.getheader("Content-Length") if handler.command == "HEAD" else None
        lines.append(f"Content-Length: {declared or len(data)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        self.seen.append(f"{handler.command} {handler.path}")
        stall = self.stall
        raw = self._upstream(handler, body)
        handler.close_connection = True
        out = handler.wfile
        if stall is None or not stall.match(handler.command, handler.path):
            out.write(raw)
            out.flush()
            return
        self.stalled.append(f"{handler.command} {handler.path}")
        if stall.mode == "hang":
            self._stop.wait(3600)
            return
        start = 0
        if stall.mode == "body":
            start = raw.index(b"\r\n\r\n") + 4
            out.write(raw[:start])
            out.flush()
        for index in range(start, len(raw)):
            if self._stop.wait(stall.rng.uniform(*stall.every)):
                return
            out.write(raw[index : index + 1])
            out.flush()
