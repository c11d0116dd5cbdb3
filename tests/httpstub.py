"""A scripted HTTP server on loopback: answers from a function, records requests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Reply = tuple[int, bytes]


@contextmanager
def http_stub(
    answer: Callable[[str, str, bytes], Reply],
    port: int = 0,
    record_headers: list[str] | None = None,
) -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """Yield (base URL, recorded requests); ``answer(method, path, body)`` gives the reply.
    ``port``: listen there (a server that comes up where a client already looks);
    ``record_headers`` receives each request's Authorization header."""
    seen: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            return None

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, self.path, body))
            if record_headers is not None:
                record_headers.append(self.headers.get("Authorization", ""))
            status, payload = answer(self.command, self.path, body)
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _any

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
