"""A forward HTTP proxy on loopback, as an egress proxy in front of the stores.

Absolute-form requests (``GET http://host:port/path``) are forwarded and answered;
CONNECT opens a tunnel to the named host:port and copies bytes both ways. Every
request is recorded (method and target), so a test can tell what went through it.
It can require Basic credentials (407 without the right ones, as squid does), or
hang: read the request and never answer, holding the connection open.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import select
import socket
import threading
from urllib.parse import urlsplit

_HOP = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a client that went away mid-answer is no test failure


class ForwardProxy:
    """The proxy; ``requests`` lists (method, target) of every request it was sent."""

    def __init__(self, credentials: tuple[str, str] | None = None, hang: bool = False) -> None:
        self.credentials = credentials
        self.hang = hang
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []
        # The client's port of each request: one port, one reused connection.
        self.peers: list[int] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.port = int(self._server.server_address[1])

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def seen(self, mark: str) -> list[str]:
        """Targets of the requests whose target contains ``mark``."""
        with self._lock:
            return [target for _, target in self.requests if mark in target]

    def _admit(self, handler: http.server.BaseHTTPRequestHandler) -> bool:
        given = handler.headers.get("Proxy-Authorization")
        with self._lock:
            self.requests.append((handler.command, handler.path))
            self.authorizations.append(given)
            self.peers.append(handler.client_address[1])
        if self.hang:
            # Accepted, never answered: only the client's own deadline ends this.
            self._release.wait()
            return False
        if self.credentials is None:
            return True
        token = base64.b64encode(":".join(self.credentials).encode()).decode()
        if given == f"Basic {token}":
            return True
        handler.send_response(407)
        handler.send_header("Proxy-Authenticate", 'Basic realm="egress"')
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return False

    def _forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        if not self._admit(handler):
            return
        target = urlsplit(handler.path)
        if target.scheme != "http" or not target.hostname:
            handler.send_error(400, "absolute-form http:// target expected")
            return
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=60)
        try:
            upstream.request(handler.command, path or "/", body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        handler.send_response(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in _HOP and key.lower() != "content-length":
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def _tunnel(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        if not self._admit(handler):
            return
        host, _, port = handler.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=60)
        except OSError:
            handler.send_error(502, "upstream unreachable")
            return
        handler.send_response(200, "Connection established")
        handler.end_headers()
        handler.wfile.flush()
        client = handler.connection
        try:
            _splice(client, upstream)
        finally:
            upstream.close()
            handler.close_connection = True

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                return None

            def _handle(self) -> None:
                proxy._forward(self)

            def do_CONNECT(self) -> None:
                proxy._tunnel(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        return Handler


def _splice(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    pair = {one: other, other: one}
    while True:
        ready, _, _ = select.select(list(pair), [], [], 60)
        if not ready:
            return
        for sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            pair[sock].sendall(data)
