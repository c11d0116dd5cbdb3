"""The daemon's admin HTTP endpoint: health, readiness, metrics, status, sync trigger."""

from __future__ import annotations

import base64
import contextlib
import hmac
import http.client
import io
import json
import selectors
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from modelsync.errors import ConfigError
from modelsync.statuspage import render as render_page
from modelsync.webhooks import MAX_BODY_BYTES, Delivery, MlflowWebhook

__all__ = ["AdminServer", "AdminView"]

# Requests served at once; more are answered 503 at once, so a flood cannot take
# the threads the model workers and the watcher need.
MAX_CONNECTIONS = 32
# Connections still sending their request, all waited on by one thread; more are
# closed at once (the oldest kept: a flood of new ones only loses new ones).
MAX_PENDING = 512
# The whole request, header and the body its Content-Length announces, must arrive
# within this of the connection's accept (a total, not per byte: a client dripping one
# byte a second is dropped here, never given a thread). Only then does it take a slot.
REQUEST_TIMEOUT = 3.0
# The name this deadline had when it covered only the header.
HEADER_TIMEOUT = REQUEST_TIMEOUT
MAX_HEADER_BYTES = 32 * 1024
# Body bytes all pending requests may hold at once (64 bodies of MAX_BODY_BYTES): 512
# pending connections cannot make the reader hold 512 full bodies. A request whose
# body would go over is answered 503 at once.
MAX_PENDING_BODY_BYTES = 64 * MAX_BODY_BYTES
# A client that does not take its answer for this long is dropped (a socket timeout
# on the handler's writes; nothing is read from a client on a slot).
IDLE_TIMEOUT = 5.0


def _content_length(value: str | None) -> int | None:
    """The body length a Content-Length header value announces; None when absent or
    not a number. The reader and the handler both use this, so they agree on it."""
    try:
        return int(value or "")
    except ValueError:
        return None


def _header_end(buffer: bytearray) -> int | None:
    """Where the request header ends (after its empty line), as http.client's parser
    sees it: a line that is only CRLF or LF after the request line; None if not yet."""
    ends = [i + 3 for i in (buffer.find(b"\n\r\n"),) if i >= 0]
    ends += [i + 2 for i in (buffer.find(b"\n\n"),) if i >= 0]
    return min(ends) if ends else None


def _announced_body(head: bytes) -> int:
    """The body bytes to collect after ``head``: its Content-Length when that is a
    size the endpoint accepts (0..MAX_BODY_BYTES); else 0, and the handler refuses
    the request without reading any body."""
    _, _, fields = head.partition(b"\n")
    try:
        headers = http.client.parse_headers(io.BytesIO(fields))
    except http.client.HTTPException:
        return 0  # too many or too long lines: the handler answers 431/400
    length = _content_length(headers.get("Content-Length"))
    return length if length is not None and 0 <= length <= MAX_BODY_BYTES else 0


class _Pending:
    """A connection whose request is still arriving."""

    __slots__ = ("address", "body", "buffer", "deadline", "need")

    def __init__(self, address: Any, deadline: float) -> None:
        self.address = address
        self.deadline = deadline
        self.buffer = bytearray()
        # Bytes the whole request has (header and body) once the header is in.
        self.need: int | None = None
        # Body bytes reserved from MAX_PENDING_BODY_BYTES.
        self.body = 0


class _HeaderReader:
    """One thread that collects every new connection's whole request (the header and
    the body its Content-Length announces), with one total deadline each; only a
    connection whose request is complete is handed on and takes a thread, so slow or
    idle clients, whatever part of the request they drip, cannot starve /healthz and
    /readyz."""

    def __init__(self, dispatch: Any) -> None:
        self._dispatch = dispatch
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._pending: dict[socket.socket, _Pending] = {}
        self._body_bytes = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="admin-headers", daemon=True)
        self._thread.start()

    def add(self, sock: socket.socket, address: Any) -> None:
        with self._lock:
            if self._closed or len(self._pending) >= MAX_PENDING:
                _close(sock)
                return
            sock.setblocking(False)
            self._pending[sock] = _Pending(address, time.monotonic() + REQUEST_TIMEOUT)
            self._selector.register(sock, selectors.EVENT_READ)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sock in list(self._pending):
                self._drop(sock)
        self._thread.join(2)
        self._selector.close()

    def _forget(self, sock: socket.socket) -> None:
        entry = self._pending.pop(sock, None)
        if entry is not None:
            self._body_bytes -= entry.body
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def _drop(self, sock: socket.socket) -> None:
        self._forget(sock)
        _close(sock)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
            # epoll sees a socket registered while it waits: a new request is read at
            # once, not at the next turn.
            ready = self._selector.select(timeout=0.1)
            with self._lock:
                for key, _ in ready:
                    self._receive(key.fileobj)  # type: ignore[arg-type]
                now = time.monotonic()
                for sock, entry in list(self._pending.items()):
                    if now >= entry.deadline:
                        self._drop(sock)

    def _receive(self, sock: socket.socket) -> None:
        entry = self._pending.get(sock)
        if entry is None:
            return
        buffer = entry.buffer
        # Never more than the request still needs: what a pending connection holds
        # stays bounded by its header and announced body.
        want = 4096 if entry.need is None else min(1 << 16, entry.need - len(buffer))
        try:
            data = sock.recv(want)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        buffer += data
        if entry.need is None:
            end = _header_end(buffer)
            if end is None or end > MAX_HEADER_BYTES:
                if len(buffer) > MAX_HEADER_BYTES:
                    self._drop(sock)
                return
            body = _announced_body(bytes(buffer[:end]))
            if self._body_bytes + body > MAX_PENDING_BODY_BYTES:
                self._forget(sock)
                with contextlib.suppress(OSError):
                    sock.send(_BUSY)  # non-blocking: a full buffer loses the answer only
                _close(sock)
                return
            entry.need, entry.body = end + body, body
            self._body_bytes += body
        if len(buffer) >= entry.need:
            self._forget(sock)
            sock.setblocking(True)
            self._dispatch(sock, bytes(buffer), entry.address)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


class _Prefixed(io.RawIOBase):
    """The request the reader collected, then end of file: nothing more is read from
    the client on a slot, so no client can hold one by sending slowly."""

    def __init__(self, head: bytes) -> None:
        self._head = head

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return 0


class _BoundedServer(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog (socketserver's default is 5): a burst of connections past it
    # waits for the kernel's SYN-ACK retries (1 s, 3 s, ...), long enough to fail a
    # probe that came with the burst, though the reader would take them at once.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._heads: dict[int, bytes] = {}
        # Before binding: a failed bind calls server_close, which closes the reader.
        self._reader = _HeaderReader(self._complete)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Accepted: the header is read by the reader, with its deadline, first.
        self._reader.add(request, client_address)

    def _complete(self, request: socket.socket, head: bytes, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        self._heads[request.fileno()] = head
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._heads.pop(request.fileno(), None)
            self._slots.release()
            raise

    def take_head(self, request: socket.socket) -> bytes:
        return self._heads.pop(request.fileno(), b"")

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_close(self) -> None:
        self._reader.close()
        super().server_close()


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
    b"Connection: close\r\n\r\n"
)


class AdminView(Protocol):
    """What the endpoint asks of the daemon."""

    def alive(self) -> bool:
        """True while the main loop is turning."""
        ...

    def not_ready(self) -> list[str]:
        """Why the daemon is not ready (e.g. models without an active version); [] if ready."""
        ...

    def degraded(self) -> list[str]:
        """What works less well than configured without costing readiness (an event
        source that fails while the poll covers); [] when nothing."""
        ...

    def status(self) -> dict[str, Any]:
        """The JSON status document (the shape of `modelsync status --json`)."""
        ...

    def request_sync(self, models: list[str] | None) -> list[str]:
        """Queue a pass for ``models`` (None: all); return the names queued.

        Raises KeyError for a model that is not configured.
        """
        ...


class AdminServer:
    def __init__(
        self,
        address: tuple[str, int],
        view: AdminView,
        registry: CollectorRegistry,
        token: str | None,
        mlflow_webhook: MlflowWebhook | None = None,
    ) -> None:
        handler = _make_handler(view, registry, token, mlflow_webhook)
        try:
            self._server = _BoundedServer(address, handler)
        except OSError as exc:
            raise ConfigError(
                f"admin.listen: cannot listen on {address[0]}:{address[1]}: {exc.strerror}"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="admin", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()  # waits for serve_forever, so only once it runs
        self._server.server_close()


def _make_handler(
    view: AdminView,
    registry: CollectorRegistry,
    token: str | None,
    mlflow_webhook: MlflowWebhook | None = None,
) -> type[BaseHTTPRequestHandler]:
    log = structlog.get_logger()

    class Handler(BaseHTTPRequestHandler):
        server_version = "modelsync"
        timeout = IDLE_TIMEOUT

        def setup(self) -> None:
            super().setup()
            assert isinstance(self.server, _BoundedServer)
            head = self.server.take_head(self.request)
            self.rfile = io.BufferedReader(_Prefixed(head))

        def handle(self) -> None:
            # One request per connection: a kept-alive connection would read its next
            # header on a worker thread, outside the header deadline.
            self.handle_one_request()

        def log_message(self, *_args: object) -> None:
            return None

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, doc: object) -> None:
            self._reply(status, (json.dumps(doc, indent=2) + "\n").encode(), "application/json")

        def _authorized(self) -> bool:
            """The token, when one is set: Bearer, or Basic with the token as password
            (what a browser asks for; any user name)."""
            if token is None:
                return True
            scheme, _, given = self.headers.get("Authorization", "").partition(" ")
            secret = given.strip()
            if scheme == "Basic":
                try:
                    secret = base64.b64decode(secret, validate=True).decode().partition(":")[2]
                except (ValueError, UnicodeDecodeError):
                    return False
            elif scheme != "Bearer":
                return False
            return hmac.compare_digest(secret.encode(), token.encode())

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/":
                if not self._authorized():
                    self.send_response(HTTPStatus.UNAUTHORIZED)
                    self.send_header("WWW-Authenticate", 'Basic realm="modelsync"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
                page = render_page(view.status(), generated)
                self._reply(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif path == "/healthz":
                alive = view.alive()
                self._json(
                    HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE, {"alive": alive}
                )
            elif path == "/readyz":
                missing = view.not_ready()
                self._json(
                    HTTPStatus.SERVICE_UNAVAILABLE if missing else HTTPStatus.OK,
                    {"ready": not missing, "not_ready": missing, "degraded": view.degraded()},
                )
            elif path == "/metrics":
                self._reply(HTTPStatus.OK, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/status":
                self._json(HTTPStatus.OK, view.status())
            elif path == "/sync":
                self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST /sync"})
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {path}"})

        do_HEAD = do_GET

        def _mlflow_webhook(self) -> None:
            """A registry delivery: its own HMAC signature is the credential, not the token."""
            if mlflow_webhook is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": "no webhook secret configured"})
                return
            length = _content_length(self.headers.get("Content-Length"))
            if length is not None and 0 <= length <= MAX_BODY_BYTES:
                # Already collected by the reader, within its deadline: no socket read.
                body = self.rfile.read(length)
                names = ("X-MLflow-Signature", "X-MLflow-Timestamp", "X-MLflow-Delivery-Id")
                headers = {name: self.headers.get(name, "") for name in names}
                delivery = mlflow_webhook.deliver(headers, body)
            else:
                error = f"need a Content-Length of at most {MAX_BODY_BYTES} bytes"
                delivery = Delivery(HTTPStatus.BAD_REQUEST, {"error": error})
            if delivery.status >= 400:
                log.warning(
                    "admin: refused an MLflow webhook delivery",
                    client=self.client_address[0],
                    status=delivery.status,
                    reason=delivery.doc.get("error"),
                )
            self._json(delivery.status, delivery.doc)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/webhooks/mlflow":
                self._mlflow_webhook()
                return
            if url.path != "/sync":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {url.path}"})
                return
            if token is not None and not self._authorized():
                log.warning(
                    "admin: refused POST /sync without the right token",
                    client=self.client_address[0],
                )
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong token"})
                return
            models = parse_qs(url.query).get("model") or None
            try:
                queued = view.request_sync(models)
            except KeyError as exc:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no model named {exc.args[0]!r}"})
                return
            self._json(HTTPStatus.ACCEPTED, {"queued": queued})

    return Handler
