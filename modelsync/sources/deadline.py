"""A hard deadline for HTTP requests that a slow server could stretch forever.

A read timeout bounds each wait for bytes, not a request: a server that sends one
byte every two seconds never trips it, and a pass would outlive its deadline by
hours. The adapter here remembers which pooled connection each thread is using;
``deadline(cancel)`` has the pass's token watched by a helper thread and, when it
fires (stop requested or pass_timeout), shuts that connection's socket down, so the
blocked read returns at once and the call raises Cancelled.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from modelsync.cancel import CancelToken

__all__ = ["ConnectionTracker"]

# How often the watcher looks at the token (the deadline is met within this).
_WATCH_PERIOD = 0.2


class ConnectionTracker:
    """Which connection each thread is using, and a way to cut it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_use: dict[int, set[Any]] = {}
        # Blocks under a deadline: key -> (thread, token), looked at by one watcher.
        self._watched: dict[object, tuple[int, CancelToken]] = {}
        self._watcher: threading.Thread | None = None

    def adapter(self, **kwargs: Any) -> HTTPAdapter:
        """A requests adapter whose pools report the connections they hand out."""
        return _TrackingAdapter(self, **kwargs)

    def track(self, manager: Any) -> None:
        """Make a urllib3 PoolManager's new pools report their connections (for
        clients that use urllib3 directly, as botocore does)."""
        manager.pool_classes_by_scheme = {
            "http": _tracked(HTTPConnectionPool, self),
            "https": _tracked(HTTPSConnectionPool, self),
        }

    def taken(self, conn: Any) -> None:
        with self._lock:
            self._in_use.setdefault(threading.get_ident(), set()).add(conn)

    def released(self, conn: Any) -> None:
        with self._lock:
            for conns in self._in_use.values():
                conns.discard(conn)

    def abort(self, thread_id: int) -> None:
        """Shut down the sockets ``thread_id`` is reading from."""
        with self._lock:
            conns = list(self._in_use.get(thread_id, ()))
        for conn in conns:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @contextlib.contextmanager
    def deadline(self, cancel: CancelToken | None) -> Iterator[None]:
        """Bound the requests made inside by ``cancel``: Cancelled once it fires."""
        if cancel is None:
            yield
            return
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


def _tracked(base: type[HTTPConnectionPool], tracker: ConnectionTracker) -> type[Any]:
    class Tracked(base):  # type: ignore[valid-type,misc]
        def _get_conn(self, timeout: float | None = None) -> Any:
            conn = super()._get_conn(timeout)
            tracker.taken(conn)
            return conn

        def _put_conn(self, conn: Any) -> None:
            tracker.released(conn)
            super()._put_conn(conn)

    return Tracked


class _TrackingAdapter(HTTPAdapter):
    def __init__(self, tracker: ConnectionTracker, **kwargs: Any) -> None:
        self._tracker = tracker
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self._tracker.track(self.poolmanager)
