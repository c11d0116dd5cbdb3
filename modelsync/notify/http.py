"""Call an HTTP endpoint of the server (e.g. Triton's /v2/repository/models/<m>/load)."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

from modelsync.config import NotifyConfig
from modelsync.errors import LoadUnknown, ReloadError, ServerNotRunning
from modelsync.reload import ReloadTarget, redact_url, render, server_words

__all__ = ["HttpNotifier", "http_call"]


def http_call(method: str, url: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
    """Status and body of one request; ServerNotRunning when nothing listens, LoadUnknown
    when the server did not answer in time or hung up."""
    shown = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise ReloadError(f"{shown}: only http:// and https:// URLs can be called")
    parts = urlsplit(url)
    auth = None
    if "@" in parts.netloc:
        # user:password@ goes into a header; it never reaches a log, the state or status.
        userinfo, _, hostport = parts.netloc.rpartition("@")
        url = urlunsplit(parts._replace(netloc=hostport))
        auth = base64.b64encode(unquote(userinfo).encode()).decode()
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - checked
    if auth is not None:
        request.add_header("Authorization", f"Basic {auth}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), bytes(response.read(65536))
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read(65536))
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            raise ServerNotRunning(f"{shown}: connection refused") from exc
        raise LoadUnknown(f"{shown}: {exc.reason}") from exc
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise LoadUnknown(f"{shown}: {type(exc).__name__}: {exc}") from exc


class HttpNotifier:
    def __init__(self, config: NotifyConfig) -> None:
        assert config.url is not None
        self._config = config

    def notify(self, target: ReloadTarget) -> None:
        url = render(self._config.url or "", target)
        body = render(self._config.body, target).encode() if self._config.body else None
        status, answer = http_call(self._config.http_method, url, body, self._config.timeout)
        if not 200 <= status < 300:
            raise ReloadError(f"{redact_url(url)} answered HTTP {status}: {server_words(answer)}")
