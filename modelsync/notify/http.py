"""Call an HTTP endpoint of the server (e.g. Triton's /v2/repository/models/<m>/load)."""

from __future__ import annotations

from pydantic import Field

from modelsync.cancel import CancelToken
from modelsync.errors import ReloadError
from modelsync.methods import Method
from modelsync.notify import NotifyConfig
from modelsync.reload import ReloadTarget, redact_url, render, server_words

__all__ = ["METHOD", "HttpNotifier", "HttpNotifyOptions"]


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

    def notify(self, target: ReloadTarget, cancel: CancelToken) -> None:
        url = render(self._config.url, target)
        body = render(self._config.body, target).encode() if self._config.body else None
        from modelsync.transport.client import server_call

        status, answer = server_call(
            self._config.http_method, url, body, self._config.timeout, cancel
        )
        if not 200 <= status < 300:
            raise ReloadError(f"{redact_url(url)} answered HTTP {status}: {server_words(answer)}")


METHOD = Method(HttpNotifyOptions, HttpNotifier)
