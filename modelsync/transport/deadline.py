"""The pass deadline on sockets: a blocked connect or read is cut when the token fires.

A read timeout bounds each wait for bytes, not a request: a server that sends one
byte every two seconds never trips it. So every urllib3 pool modelsync uses (the
SDKs' own and the server API client's) is made of classes derived here: each
connection is registered with the thread that took it, from before its socket
connects until it goes back to the pool. ``deadline(cancel)`` has one watcher thread
look at the token and, when it fires (stop requested or pass_timeout), shut down
the sockets of the blocked thread, so the connect, TLS handshake or read returns at
once and the call raises Cancelled.

Derived, not replaced: a client's pool classes (botocore's AWSHTTPConnectionPool)
keep their behaviour, and every pool manager the client has or makes later (a
proxy's) gets the derived classes; wiring only the first manager with plain urllib3
classes was how an S3 source behind HTTP(S)_PROXY escaped the deadline.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.timeout import Timeout

from modelsync.cancel import CancelToken
from modelsync.transport.headers import Response

__all__ = ["Deadlines", "bounded"]

T = TypeVar("T")

# How often the watcher looks at the token (the deadline is met within this).
_WATCH_PERIOD = 0.2


class Deadlines:
    """Which connections each thread is using, which token bounds that thread, and
    the watcher that cuts them. One per client (a set of pools)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_use: dict[int, set[Any]] = {}
        # Blocks under a deadline: key -> (thread, token), looked at by one watcher.
        self._watched: dict[object, tuple[int, CancelToken]] = {}
        self._watcher: threading.Thread | None = None
        self._classes: dict[type[Any], type[Any]] = {}

    # -- wiring pools ------------------------------------------------------------

    def pool_class(self, base: type[Any]) -> type[Any]:
        """``base`` (a urllib3 connection pool class) with its connections tracked."""
        with self._lock:
            if base in self._classes or base in self._classes.values():
                return self._classes.get(base, base)
            derived = _derive_pool(base, self)
            self._classes[base] = derived
            return derived

    def wire(self, manager: Any) -> None:
        """Make every pool a urllib3 PoolManager (or ProxyManager) creates tracked."""
        manager.pool_classes_by_scheme = {
            scheme: self.pool_class(cls) for scheme, cls in manager.pool_classes_by_scheme.items()
        }

    # -- the registry --------------------------------------------------------------

    def taken(self, conn: Any) -> None:
        with self._lock:
            self._in_use.setdefault(threading.get_ident(), set()).add(conn)

    def released(self, conn: Any) -> None:
        with self._lock:
            for conns in self._in_use.values():
                conns.discard(conn)

    def token(self) -> CancelToken | None:
        """The token bounding the calling thread (the innermost), if any."""
        me = threading.get_ident()
        with self._lock:
            found = [token for thread, token in self._watched.values() if thread == me]
        return found[-1] if found else None

    def abort(self, thread_id: int) -> None:
        """Shut down the sockets ``thread_id`` connects or reads through."""
        with self._lock:
            conns = list(self._in_use.get(thread_id, ()))
        for conn in conns:
            for sock in (getattr(conn, "sock", None), getattr(conn, "_deadline_sock", None)):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    @contextlib.contextmanager
    def deadline(self, cancel: CancelToken | None) -> Iterator[None]:
        """Bound the requests made inside by ``cancel``: Cancelled once it fires."""
        if cancel is None:
            yield
            return
        cancel.check()
        key = object()
        with self._lock:
            self._watched[key] = (threading.get_ident(), cancel)
            if self._watcher is None:
                # One watcher for every block in progress (a thread per request cost
                # more than the request itself on small objects); it ends when idle.
                self._watcher = threading.Thread(target=self._watch, name="deadline", daemon=True)
                self._watcher.start()
        try:
            yield
        except Exception:
            cancel.check()  # a read cut by the watcher is the token's doing: Cancelled
            raise
        finally:
            with self._lock:
                del self._watched[key]

    def bounded(self, call: Callable[[], T], cancel: CancelToken | None) -> T:
        """``bounded(call, cancel)`` whose requests on these pools are cut at the
        deadline too, so its helper thread ends with the wait instead of living on:
        for a library that sleeps between its own retries (google-auth's metadata
        ping backs off between three tries), which no socket cut reaches."""

        def run() -> T:
            with self.deadline(cancel):
                return call()

        return bounded(run, cancel)

    def _watch(self) -> None:
        # Keeps cutting until a block ends: a client library that retries a broken
        # read on its own (azure-storage-blob does) opens a new connection.
        while True:
            time.sleep(_WATCH_PERIOD)
            with self._lock:
                watched = list(self._watched.values())
                if not watched:
                    self._watcher = None
                    return
            for thread_id, cancel in watched:
                if cancel.cancelled():
                    self.abort(thread_id)


def bounded(call: Callable[[], T], cancel: CancelToken | None) -> T:
    """``call()``, waited for until ``cancel`` fires (Cancelled then).

    For work whose sockets no Deadlines can reach: an SDK's credential provider
    that builds its own client per refresh (botocore's STS for IRSA, its container
    and process providers), a name lookup, a client made with its first
    credentials (sources/base.py Connections), clean-up while stopping. The call
    runs on a helper thread; when the deadline passes first, that thread is left to
    end on the library's own timeouts and its result is dropped, so the pass ends on
    time.
    """
    if cancel is None:
        return call()
    cancel.check()
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="bounded", daemon=True).start()
    while not done.wait(_WATCH_PERIOD):
        cancel.check()
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result


def _derive_pool(base: type[Any], deadlines: Deadlines) -> type[Any]:
    connection = _derive_connection(base.ConnectionCls, deadlines)

    class DeadlinePool(base):  # type: ignore[misc]
        ConnectionCls = connection

        def _get_conn(self, timeout: float | None = None) -> Any:
            conn = super()._get_conn(timeout)
            deadlines.taken(conn)
            return conn

        def _put_conn(self, conn: Any) -> None:
            deadlines.released(conn)
            super()._put_conn(conn)

        def _get_timeout(self, timeout: Any) -> Timeout:
            # Neither the connect nor one read waits past the deadline, even before
            # the watcher's next look.
            resolved: Timeout = super()._get_timeout(timeout)
            token = deadlines.token()
            left = token.remaining() if token is not None else None
            if left is None:
                return resolved
            left = max(0.01, left)
            connect, read = resolved.connect_timeout, resolved.read_timeout
            return Timeout(
                connect=left if not isinstance(connect, int | float) else min(connect, left),
                read=left if not isinstance(read, int | float) else min(read, left),
            )

    DeadlinePool.__name__ = DeadlinePool.__qualname__ = base.__name__
    return DeadlinePool


def _derive_connection(base: type[Any], deadlines: Deadlines) -> type[Any]:
    class DeadlineConnection(base):  # type: ignore[misc]
        _deadline_sock: socket.socket | None = None
        # Every pool's connections are derived here, so this is also where their
        # responses get the header parser that skips the email package (headers.py).
        response_class = Response

        def _new_conn(self) -> socket.socket:
            # urllib3's connect, except that the socket is known (and can be shut
            # down by the watcher) before it connects: a blackholed host is cut too.
            host, port = self._dns_host, self.port
            try:
                addresses = _resolve(host.strip("[]"), port, deadlines.token())
            except socket.gaierror as exc:
                raise NameResolutionError(self.host, self, exc) from exc
            error: OSError | None = None
            for family, kind, proto, _name, address in addresses:
                sock = socket.socket(family, kind, proto)
                self._deadline_sock = sock
                try:
                    for option in self.socket_options or ():
                        sock.setsockopt(*option)
                    if isinstance(self.timeout, int | float):
                        sock.settimeout(self.timeout)
                    if self.source_address:
                        sock.bind(self.source_address)
                    sock.connect(address)
                    return sock
                except TimeoutError as exc:
                    sock.close()
                    raise ConnectTimeoutError(
                        self, f"connect to {self.host}:{port} timed out"
                    ) from exc
                except OSError as exc:
                    sock.close()
                    error = exc
            raise NewConnectionError(self, f"connect to {self.host}:{port}: {error}") from error

    DeadlineConnection.__name__ = DeadlineConnection.__qualname__ = base.__name__
    return DeadlineConnection


def _resolve(host: str, port: int, cancel: CancelToken | None) -> list[Any]:
    """getaddrinfo within ``cancel``'s deadline.

    A name server that never answers holds getaddrinfo for the resolver's own
    timeouts (5 s per try and server), and no socket of ours exists yet for the
    watcher to cut: the lookup runs under ``bounded``. An address needs no lookup
    and no helper thread.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bounded(lambda: socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM), cancel)
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
