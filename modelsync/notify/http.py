"""Call an HTTP endpoint of the server (e.g. Triton's /v2/repository/models/<m>/load)."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field

from modelsync.errors import LoadUnknown, ReloadError, ServerNotRunning
from modelsync.methods import Method
from modelsync.notify import NotifyConfig
from modelsync.reload import ReloadTarget, redact_url, render, server_words

__all__ = ["METHOD", "HttpNotifier", "HttpNotifyOptions", "http_call"]


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


class HttpNotifyOptions(NotifyConfig):
    """method = "http": a request to the server (its reload or load endpoint)."""

    # {model}, {version} and {path} are substituted; user:password@ is sent as Basic auth.
    url: str = Field(pattern=r"^https?://[^\s]+$")
    http_method: str = Field(default="POST", pattern="^(GET|POST|PUT|PATCH|DELETE)$")
    # Request body; {model}, {version} and {path} are substituted.
    body: str | None = None


class HttpNotifier:
    def __init__(self, config: HttpNotifyOptions) -> None:
        self._config = config

    def notify(self, target: ReloadTarget) -> None:
        url = render(self._config.url, target)
        body = render(self._config.body, target).encode() if self._config.body else None
        status, answer = http_call(self._config.http_method, url, body, self._config.timeout)
        if not 200 <= status < 300:
            raise ReloadError(f"{redact_url(url)} answered HTTP {status}: {server_words(answer)}")


METHOD = Method(HttpNotifyOptions, HttpNotifier)
