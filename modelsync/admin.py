"""The daemon's admin HTTP endpoint: health, readiness, metrics, status, sync trigger."""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from modelsync.errors import ConfigError
from modelsync.httpintake import BoundedHandler, BoundedServer, content_length
from modelsync.statuspage import render as render_page
from modelsync.webhooks import MAX_BODY_BYTES, Delivery, MlflowWebhook

__all__ = ["AdminServer", "AdminView"]


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
            self._server = BoundedServer(address, handler)
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
            self._server.shutdown()  # wakes serve_forever and waits for it to return
        self._server.server_close()


def _make_handler(
    view: AdminView,
    registry: CollectorRegistry,
    token: str | None,
    mlflow_webhook: MlflowWebhook | None = None,
) -> type[BaseHTTPRequestHandler]:
    log = structlog.get_logger()

    class Handler(BoundedHandler):
        server_version = "modelsync"

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
            length = content_length(self.headers.get("Content-Length"))
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
