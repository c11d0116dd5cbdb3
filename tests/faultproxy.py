"""A fault-injecting HTTP proxy between the storage client and the emulator.

By seeded probability it answers 503 or 429, resets the connection, truncates the
body, or delays the answer; it can also flip one byte of chosen objects' bodies.
Two more kinds, only when a plan names them: ``norange`` drops a ranged GET's range
(Range, Azure's x-ms-range), so the store answers 200 with the whole object (a cache
or CDN that ignores Range), and ``gzip`` compresses a body and says
``Content-Encoding: gzip`` although the client asked for identity (a compressing
proxy); ``garble`` answers other bytes than the store's, its checksum headers
recomputed to match them (a body that every transport check passes, yet wrong).
``only`` limits faults to some paths and ``limit`` their number.
Every request is counted, so tests can assert how many a pass costs.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import http.server
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

KINDS = ("503", "429", "reset", "truncate", "delay")
_RANGE_HEADERS = ("range", "x-ms-range")
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


def forwarding_handler(
    serve: Callable[[http.server.BaseHTTPRequestHandler], None],
) -> type[http.server.BaseHTTPRequestHandler]:
    """A quiet HTTP/1.1 request handler that hands every request, whatever its method,
    to ``serve`` (the proxies of the test suite decide per request)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            return None

        def _handle(self) -> None:
            serve(self)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    return Handler


@dataclass
class FaultPlan:
    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = KINDS
    # Called with the request path: True flips one byte of that response body.
    flip: Callable[[str], bool] | None = None
    # Bytes per second for response bodies (0: unlimited), to make downloads take time.
    throttle: int = 0
    # Called with the request path: True throttles that response (default: all).
    slow: Callable[[str], bool] | None = None
    # Seconds between single bytes of the whole answer to a slow path, status line and
    # headers included (0: off): a read timeout never trips, only a deadline can help.
    drip: float = 0.0
    # Slow paths get no answer at all: the request is read, the connection held open.
    silent: bool = False
    # Called with the request path: True lets a fault hit it (default: every path).
    only: Callable[[str], bool] | None = None
    # Faults injected at most (0: no limit), e.g. 1 for "once".
    limit: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hang up on injected faults all the time; that is the point.
        return None


class FaultProxy:
    def __init__(self, upstream_port: int, plan: FaultPlan | None = None) -> None:
        self.upstream_port = upstream_port
        self.plan = plan or FaultPlan()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        # The first KiB of each request body, in the same order (upload metadata).
        self.bodies: list[bytes] = []
        self.bytes_out = 0
        self.faults: Counter[str] = Counter()
        self.server = _QuietServer(("127.0.0.1", 0), forwarding_handler(self._serve))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bodies.clear()
            self.faults.clear()
            self.bytes_out = 0

    def _pick_fault(self, handler: http.server.BaseHTTPRequestHandler) -> str | None:
        plan = self.plan
        if plan.only is not None and not plan.only(handler.path):
            return None
        ranged = any(handler.headers.get(name) for name in _RANGE_HEADERS)
        with self.lock:
            if plan.limit and sum(self.faults.values()) >= plan.limit:
                return None
            if plan.rate and plan.rng.random() < plan.rate:
                fault = plan.rng.choice(plan.kinds)
                # Dropping a range needs one: a whole-object GET is left alone.
                if fault == "norange" and (handler.command != "GET" or not ranged):
                    return None
                # Counted under the lock that read the limit: parallel ranges stay in it.
                self.faults[fault] += 1
                return fault
        return None

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            self.requests.append((handler.command, handler.path))
            self.bodies.append(body[:1024])
        slow = self.plan.slow is None or self.plan.slow(handler.path)
        if slow and self.plan.silent:
            self._hold(handler)
            return
        fault = self._pick_fault(handler)
        if fault in ("503", "429", "403"):
            payload = b'{"error": {"code": %s, "message": "injected"}}' % fault.encode()
            handler.send_response(int(fault))
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if fault == "reset":
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.close_connection = True
            handler.connection.close()
            return
        if fault == "delay":
            time.sleep(0.3)
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
        if fault == "norange":
            headers = {k: v for k, v in headers.items() if k.lower() not in _RANGE_HEADERS}
        headers["Host"] = f"127.0.0.1:{self.upstream_port}"
        upstream.request(handler.command, handler.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        if self.plan.flip is not None and data and self.plan.flip(handler.path):
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0xFF
            data = bytes(flipped)
        if slow and self.plan.drip:
            self._drip(handler, response, data)
            return
        handler.send_response(response.status)
        answer = response.getheaders()
        if fault == "garble" and handler.command != "HEAD":
            data, answer = _garbled(data, answer)
        for key, value in answer:
            if key.lower() not in _HOP | {"content-length"}:
                handler.send_header(key, value)
        if fault == "gzip" and handler.command != "HEAD":
            data = gzip.compress(data)
            handler.send_header("Content-Encoding", "gzip")
        # A HEAD answer has no body but the object's length.
        declared = response.getheader("Content-Length") if handler.command == "HEAD" else None
        handler.send_header("Content-Length", declared or str(len(data)))
        handler.end_headers()
        if fault == "truncate" and len(data) > 1:
            handler.wfile.write(data[: len(data) // 2])
            handler.close_connection = True
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            if self.plan.throttle and (self.plan.slow is None or self.plan.slow(handler.path)):
                step = max(1, self.plan.throttle // 20)
                for start in range(0, len(data), step):
                    handler.wfile.write(data[start : start + step])
                    # Counted as sent, so a test can act part-way through a download.
                    with self.lock:
                        self.bytes_out += len(data[start : start + step])
                    time.sleep(0.05)
            else:
                handler.wfile.write(data)
                with self.lock:
                    self.bytes_out += len(data)
        except (BrokenPipeError, ConnectionResetError, OSError):
            handler.close_connection = True
            return

    def _hold(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        # Until the client hangs up or the proxy stops: never a byte back.
        handler.close_connection = True
        handler.connection.settimeout(0.5)
        while self.thread.is_alive():
            try:
                if not handler.connection.recv(1):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def _drip(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        response: http.client.HTTPResponse,
        data: bytes,
    ) -> None:
        head = [f"HTTP/1.1 {response.status} {response.reason}"]
        head += [
            f"{k}: {v}"
            for k, v in response.getheaders()
            if k.lower() not in _HOP | {"content-length"}
        ]
        head.append(f"Content-Length: {len(data) if handler.command != 'HEAD' else 0}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        raw += data if handler.command != "HEAD" else b""
        handler.close_connection = True
        try:
            for i in range(len(raw)):
                handler.connection.sendall(raw[i : i + 1])
                with self.lock:
                    self.bytes_out += 1
                time.sleep(self.plan.drip)
        except OSError:
            return


def _garbled(data: bytes, headers: list[tuple[str, str]]) -> tuple[bytes, list[tuple[str, str]]]:
    """Other bytes than ``data`` with the storage checksums of each store (GCS's
    X-Goog-Hash, S3's ETag, Azure's Content-MD5) made to match them."""
    import google_crc32c

    wrong = b"\xff garbled \xff" + data[::-1]
    md5 = hashlib.md5(wrong, usedforsecurity=False).digest()
    crc = google_crc32c.value(wrong).to_bytes(4, "big")
    b64 = base64.b64encode
    out: list[tuple[str, str]] = []
    for key, value in headers:
        name = key.lower()
        if name == "x-goog-hash":
            value = f"crc32c={b64(crc).decode()},md5={b64(md5).decode()}"
        elif name == "etag" and len(value.strip('"')) == 32:
            value = f'"{md5.hex()}"'
        elif name == "content-md5":
            value = b64(md5).decode()
        elif name.startswith("x-amz-checksum-"):
            continue
        out.append((key, value))
    return wrong, out
