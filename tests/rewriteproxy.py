"""A forwarding HTTP proxy that may rewrite the upstream's answers: a store that lies.

``hook(method, path, headers)`` decides per request: None forwards it untouched; a
callable rewrites the upstream answer's (status, headers, body). The hook may also
change ``headers`` before they are forwarded (drop a Range, say). The answer is read
whole, so this is for small objects in tests, not for throughput.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from tests.faultproxy import forwarding_handler

Answer = tuple[int, list[tuple[str, str]], bytes]
Rewrite = Callable[[int, list[tuple[str, str]], bytes], Answer]
Hook = Callable[[str, str, dict[str, str]], Rewrite | None]

# Set by the proxy on every answer it writes; never forwarded from upstream.
_OWN = {"content-length", "transfer-encoding", "connection", "date", "server", "keep-alive"}


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a client that hangs up mid-answer is not the test's business


class RewriteProxy:
    """On 127.0.0.1, in front of ``upstream`` (http://host:port)."""

    def __init__(self, upstream: str, hook: Hook) -> None:
        self._upstream = urlsplit(upstream)
        self._hook = hook
        self.rewritten = 0
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), forwarding_handler(self._serve))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {
            k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")
        }
        rewrite = self._hook(handler.command, handler.path, headers)
        host, port = self._upstream.hostname or "127.0.0.1", self._upstream.port or 80
        upstream = http.client.HTTPConnection(host, port, timeout=30)
        try:
            upstream.request(handler.command, handler.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            status, answer_headers, data = answer.status, answer.getheaders(), answer.read()
        finally:
            upstream.close()
        if rewrite is not None:
            status, answer_headers, data = rewrite(status, answer_headers, data)
            with self._lock:
                self.rewritten += 1
        handler.send_response(status)
        for name, value in answer_headers:
            if name.lower() not in _OWN:
                handler.send_header(name, value)
        # A HEAD's length is the object's, as upstream said; any other is the body's.
        lengths = [v for k, v in answer_headers if k.lower() == "content-length"]
        head = handler.command == "HEAD" and lengths
        handler.send_header("Content-Length", lengths[0] if head else str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)
