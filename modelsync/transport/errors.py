"""Network failures in one line: the root cause in plain words, and the host:port.

Libraries wrap a refused connect three or four deep (botocore's EndpointConnectionError
around urllib3's MaxRetryError around NewConnectionError around the OSError) and
their messages print the pool's repr; cut at the first line, a message stopped
before the cause. Here the chain is walked to its root, which is named in a few
fixed words ("connection refused", "name not resolved", "TLS: …", "timed out",
"connection reset", "closed by the server"), and the host is taken from whichever
layer knew it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

from modelsync.errors import TransientSourceError

__all__ = ["HttpStatus", "cause", "endpoint", "network_error", "network_line"]


class HttpStatus(Exception):
    """A store answered a GET with a status other than 200/206 (transport/engine.py);
    the backend says what that status means for its store (``translate``)."""

    def __init__(self, status: int, what: str, body: bytes = b"") -> None:
        text = body.decode("utf-8", errors="replace").strip().splitlines()
        super().__init__(f"{what}: HTTP {status}" + (f": {text[0][:200]}" if text else ""))
        self.status = status
        self.body = body


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (
            getattr(current, "reason", None),  # urllib3 MaxRetryError, urllib URLError
            getattr(current, "original_error", None),
            getattr(current, "inner_exception", None),  # azure-core
            getattr(current, "error", None),  # botocore keeps the wrapped one here
            current.__cause__,
            current.__context__,
            *[arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)],
        ):
            if isinstance(linked, BaseException):
                todo.append(linked)


def cause(exc: BaseException) -> str | None:
    """The root cause in fixed words, or None when nothing in the chain is a network fault."""
    import urllib3.exceptions as u3

    from modelsync.errors import Cancelled

    chain = list(_chain(exc))
    for item in chain:
        if isinstance(item, Cancelled):
            return "pass deadline" if "deadline" in str(item) else "stopped"
    for item in chain:
        if isinstance(item, socket.gaierror | u3.NameResolutionError):
            return "name not resolved"
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
    for item in chain:
        # Before urllib3's SSLError, whose text is the whole OpenSSL message.
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"TLS: certificate not trusted ({item.verify_message or item.reason})"
        if isinstance(item, ssl.SSLError) and item.reason:
            return f"TLS: {item.reason}"
    for item in chain:
        if isinstance(item, ssl.SSLError | u3.SSLError):
            # "[SSL: NAME] what happened (_ssl.c:1006)": the words, not OpenSSL's file.
            text = str(item).split("] ", 1)[-1].split(" (_ssl.c", 1)[0]
            return f"TLS: {text or 'handshake failed'}"
    for item in chain:
        if isinstance(item, TimeoutError | socket.timeout | u3.TimeoutError):
            return "timed out"
        if isinstance(item, ConnectionResetError | BrokenPipeError):
            return "connection reset"
        if isinstance(item, u3.ProtocolError | u3.IncompleteRead | ConnectionAbortedError):
            return "closed by the server"
        if type(item).__name__ in ("RemoteDisconnected", "IncompleteRead", "ChunkedEncodingError"):
            return "closed by the server"
    for item in chain:
        if isinstance(item, OSError) and item.strerror:
            return item.strerror.lower()
    return None


def endpoint(exc: BaseException) -> str | None:
    """host:port of the failed connection, from whichever layer of the chain knew it."""
    for item in _chain(exc):
        # urllib3's NewConnectionError keeps a deprecated ``pool`` alias of ``conn``.
        holders = [getattr(item, "conn", None)]
        if holders[0] is None and "pool" in vars(item):
            holders.append(item.pool)  # type: ignore[attr-defined]
        for holder in holders:
            host, port = getattr(holder, "host", None), getattr(holder, "port", None)
            if isinstance(host, str) and host:
                return f"{host}:{port}" if port else host
        for key in ("endpoint_url", "url"):
            url = getattr(item, key, None)
            if url is None and isinstance(getattr(item, "kwargs", None), dict):
                url = item.kwargs.get(key)  # type: ignore[attr-defined]
            if isinstance(url, str) and "://" in url:
                parts = urlsplit(url)
                if parts.hostname:
                    default = 443 if parts.scheme == "https" else 80
                    return f"{parts.hostname}:{parts.port or default}"
    return None


def network_line(exc: BaseException, fallback_host: str | None = None) -> str | None:
    """ "<cause> (<host:port>)" for a network failure; None when ``exc`` is not one."""
    words = cause(exc)
    if words is None:
        return None
    where = endpoint(exc) or fallback_host
    return f"{words} ({where})" if where else words


def network_error(exc: BaseException, what: str) -> TransientSourceError | None:
    """A storage call's network failure as one retryable line; None when it is not one."""
    line = network_line(exc)
    return TransientSourceError(f"{what}: {line}") if line is not None else None
