"""The HTTP client for the model servers' APIs (notify, confirm, presets, smoke).

urllib3 pools built from the deadline layer's classes: each request is bounded by
its own timeout and by the pass's token (the watcher cuts a dripping answer or a
silent server; the connect is cut too), reads at most ``limit`` bytes of answer,
and fails in one line naming the cause and host:port.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

import urllib3

from modelsync.cancel import CancelToken
from modelsync.errors import Cancelled, LoadUnknown, ReloadError, ServerNotRunning
from modelsync.transport.deadline import Deadlines
from modelsync.transport.errors import cause, endpoint

__all__ = ["HttpClient", "HttpFailure", "Response", "server_call"]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class HttpFailure(Exception):
    """No answer: ``refused`` when nothing listens; the message is one line."""

    def __init__(self, message: str, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


class HttpClient:
    """One pool set for every server API call of the process."""

    _shared: HttpClient | None = None
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls) -> HttpClient:
        """The process's one client (its pools are reused by every server call)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __init__(self) -> None:
        self._deadlines = Deadlines()
        self._pools = urllib3.PoolManager(num_pools=16, maxsize=4, retries=False)
        self._deadlines.wire(self._pools)

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        timeout: float,
        cancel: CancelToken | None,
        limit: int = 65536,
    ) -> Response:
        """Status and at most ``limit`` bytes of body, all within ``timeout`` seconds
        and the token; Cancelled when the token fired, HttpFailure without an answer."""
        parts = urlsplit(url)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if "@" in parts.netloc:
            # user:password@ goes into a header; it never reaches a log or the state.
            userinfo, _, hostport = parts.netloc.rpartition("@")
            url = urlunsplit(parts._replace(netloc=hostport))
            headers["Authorization"] = (
                "Basic " + base64.b64encode(unquote(userinfo).encode()).decode()
            )
        # The request's own time limit is a token too, so a drip is cut at it.
        own = (cancel or CancelToken()).within(timeout)
        host = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        try:
            with self._deadlines.deadline(own):
                response = self._pools.request(
                    method,
                    url,
                    body=body,
                    headers=headers,
                    timeout=urllib3.Timeout(connect=timeout, read=timeout),
                    preload_content=False,
                    redirect=False,
                )
                try:
                    data = response.read(limit)
                finally:
                    # An answer longer than ``limit`` is not read on: the connection goes.
                    response.close()
                    response.release_conn()
                return Response(response.status, bytes(data))
        except Cancelled as exc:
            if cancel is not None and cancel.cancelled():
                raise
            raise HttpFailure(f"timed out after {timeout:g}s ({host})", refused=False) from exc
        except Exception as exc:
            if cancel is not None:
                cancel.check()
            if own.cancelled():
                raise HttpFailure(f"timed out after {timeout:g}s ({host})", False) from exc
            words = cause(exc) or f"{type(exc).__name__}"
            where = endpoint(exc) or host
            raise HttpFailure(f"{words} ({where})", words == "connection refused") from exc


def server_call(
    method: str, url: str, body: bytes | None, timeout: float, cancel: CancelToken | None
) -> tuple[int, bytes]:
    """Status and body of one call to a model server's API; ServerNotRunning when
    nothing listens, LoadUnknown when it did not answer in time or hung up,
    Cancelled when the pass's token fired. Messages never show user:password."""
    from modelsync.reload import redact_url

    shown = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise ReloadError(f"{shown}: only http:// and https:// URLs can be called")
    try:
        answer = HttpClient.shared().request(method, url, body, timeout, cancel)
    except HttpFailure as exc:
        if exc.refused:
            raise ServerNotRunning(f"{shown}: {exc}") from exc
        raise LoadUnknown(f"{shown}: {exc}") from exc
    return answer.status, answer.body
