"""How the admin endpoint takes requests: every connection's whole request (header and
announced body) is collected by one thread with one total deadline, and only a complete
request takes one of a bounded number of handler threads. Slow, idle or flooding
clients therefore cannot starve the probes (/healthz, /readyz) that keep the pod alive.
The routes are modelsync.admin's; this module knows nothing of them."""

from __future__ import annotations

import contextlib
import http.client
import io
import selectors
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelsync.webhooks import MAX_BODY_BYTES

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_PENDING_BODY_BYTES",
    "REQUEST_TIMEOUT",
    "BoundedHandler",
    "BoundedServer",
    "content_length",
]

# Requests served at once; more are answered 503 at once, so a flood cannot take
# the threads the model workers and the watcher need.
MAX_CONNECTIONS = 32
# Connections still sending their request, all waited on by one thread; past this
# many, the oldest is closed for each new one (see _HeaderReader.add).
MAX_PENDING = 512
# The whole request, header and the body its Content-Length announces, must arrive
# within this of the connection's accept (a total, not per byte: a client dripping one
# byte a second is dropped here, never given a thread). Only then does it take a slot.
REQUEST_TIMEOUT = 3.0
MAX_HEADER_BYTES = 32 * 1024
# Body bytes all pending requests may hold at once (64 bodies of MAX_BODY_BYTES): 512
# pending connections cannot make the reader hold 512 full bodies. A request whose
# body would go over is answered 503 at once.
MAX_PENDING_BODY_BYTES = 64 * MAX_BODY_BYTES
# A client that does not take its answer for this long is dropped (a socket timeout
# on the handler's writes; nothing is read from a client on a slot).
IDLE_TIMEOUT = 5.0


def content_length(value: str | None) -> int | None:
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
    length = content_length(headers.get("Content-Length"))
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


class _Waker:
    """A socket pair whose read end a selector waits on beside its sockets: ``wake``
    from any thread ends the wait at once; ``drain`` reads what woke it, so the next
    wait sleeps again."""

    def __init__(self) -> None:
        self._recv, self._send = socket.socketpair()
        for end in (self._recv, self._send):
            end.setblocking(False)

    def fileno(self) -> int:
        return self._recv.fileno()

    def wake(self) -> None:
        # Non-blocking: a full pair already holds a wake-up not yet read.
        with contextlib.suppress(OSError):
            self._send.send(b"\0")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            self._recv.recv(4096)

    def close(self) -> None:
        for end in (self._recv, self._send):
            _close(end)


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
        # The thread sleeps until a socket is readable or the oldest pending request's
        # deadline, not on a fixed tick: an idle daemon beside a model server is idle
        # for days, and a 10 Hz loop here was half of its CPU. A byte on this pair
        # wakes it when the deadline to sleep until changes (a connection added) or
        # when it is closed.
        self._waker = _Waker()
        self._selector.register(self._waker, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="admin-headers", daemon=True)
        self._thread.start()

    def add(self, sock: socket.socket, address: Any) -> None:
        with self._lock:
            if self._closed:
                _close(sock)
                return
            if len(self._pending) >= MAX_PENDING:
                # The oldest goes, not the newcomer: a client that holds the pool full
                # with idle connections, opening one again each time one is dropped,
                # would otherwise have every probe closed. A probe sends its request
                # at once, so it is done long before MAX_PENDING newer ones push it out.
                self._drop(next(iter(self._pending)))
            sock.setblocking(False)
            self._pending[sock] = _Pending(address, time.monotonic() + REQUEST_TIMEOUT)
            self._selector.register(sock, selectors.EVENT_READ)
            if len(self._pending) == 1:
                self._waker.wake()  # it sleeps without a deadline while none is pending

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sock in list(self._pending):
                self._drop(sock)
            self._waker.wake()
        self._thread.join(2)
        self._selector.close()
        self._waker.close()

    def _timeout(self) -> float | None:
        """How long the thread may sleep: until the oldest pending request's deadline
        (every request has the same timeout, so the first added is the first due), or
        without end while none is pending. Called with the lock held."""
        oldest = next(iter(self._pending.values()), None)
        return None if oldest is None else max(0.0, oldest.deadline - time.monotonic())

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
                timeout = self._timeout()
            # epoll sees a socket registered while it waits: a new request is read at
            # once, not at the next turn.
            ready = self._selector.select(timeout=timeout)
            with self._lock:
                for key, _ in ready:
                    if key.fileobj is self._waker:
                        self._waker.drain()
                        continue
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
            # Only the request: bytes a client sent past its announced body (a second,
            # pipelined request) never reach the handler.
            self._dispatch(sock, bytes(buffer[: entry.need]), entry.address)


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


class BoundedServer(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog (socketserver's default is 5): a burst of connections past it
    # waits for the kernel's SYN-ACK retries (1 s, 3 s, ...), long enough to fail a
    # probe that came with the burst, though the reader would take them at once.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._heads: dict[int, bytes] = {}
        # serve_forever sleeps until a connection comes or shutdown writes here.
        self._stop_waker = _Waker()
        self._stop_asked = False
        self._stopped = threading.Event()
        self._stopped.set()
        # Before binding: a failed bind calls server_close, which closes the reader.
        self._reader = _HeaderReader(self._complete)
        super().__init__(address, handler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """socketserver's loop without its poll: it turned twice a second to look for
        a shutdown, on a daemon that is idle for days; here it sleeps until a client
        connects or shutdown() wakes it (``poll_interval`` is not used)."""
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._stop_waker, selectors.EVENT_READ)
                while not self._stop_asked:
                    for key, _ in selector.select():
                        if key.fileobj is self._stop_waker:
                            # Read, so that a loop run again does not spin on it.
                            self._stop_waker.drain()
                        elif not self._stop_asked:
                            self._accept()
                    self.service_actions()
        finally:
            self._stop_asked = False
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever and wait for it to return (at once if it is not running)."""
        self._stop_asked = True
        self._stop_waker.wake()
        self._stopped.wait()

    def _accept(self) -> None:
        """One connection off the listening socket, as socketserver takes it."""
        try:
            request, client_address = self.get_request()
        except OSError:
            return  # gone between the select and the accept
        if not self.verify_request(request, client_address):
            self.shutdown_request(request)
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)
        except BaseException:
            self.shutdown_request(request)
            raise

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
        self._stop_waker.close()


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
    b"Connection: close\r\n\r\n"
)


class BoundedHandler(BaseHTTPRequestHandler):
    """A handler of a BoundedServer: one request per connection, read from what the
    intake collected (never from the socket), and a client that does not take its
    answer is dropped after IDLE_TIMEOUT."""

    timeout = IDLE_TIMEOUT

    def setup(self) -> None:
        super().setup()
        assert isinstance(self.server, BoundedServer)
        head = self.server.take_head(self.request)
        self.rfile = io.BufferedReader(_Prefixed(head))

    def handle(self) -> None:
        # One request per connection: a kept-alive connection would read its next
        # header on a worker thread, outside the request deadline.
        self.handle_one_request()

    def log_message(self, *_args: object) -> None:
        return None
