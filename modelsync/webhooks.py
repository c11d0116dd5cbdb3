"""MLflow's registry webhooks (3.3+): an alias change wakes the models that follow it.

MLflow signs each delivery with HMAC-SHA256 over ``<delivery id>.<timestamp>.<body>``
keyed by the webhook's secret, and sends ``X-MLflow-Signature: v1,<base64>``,
``X-MLflow-Timestamp`` (Unix seconds) and ``X-MLflow-Delivery-Id``. A delivery is
accepted only with a valid signature and a timestamp within ``MAX_SKEW_S`` of now
(a captured delivery cannot be replayed later). An accepted event is never trusted
content: it only queues a pass of each model whose source follows that registered
model and alias; the pass asks the registry itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelsync.backends.mlflow import parse_mlflow_url
from modelsync.errors import ConfigError, StoreError
from modelsync.fsutil import read_regular

if TYPE_CHECKING:
    from modelsync.config import ModelConfig

__all__ = ["MAX_BODY_BYTES", "MAX_SKEW_S", "Delivery", "MlflowWebhook", "read_secret", "sign"]

# MLflow's alias payloads are a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024
# Deliveries older or newer than this (seconds) are refused: replay protection.
MAX_SKEW_S = 300.0
_SIGNATURE_VERSION = "v1"
# A secret is a line; a bigger file is not one.
SECRET_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Delivery:
    """What the endpoint answers: an HTTP status and the JSON document to send."""

    status: int
    doc: dict[str, object]


def read_secret(path: Path) -> bytes:
    """The webhook secret from ``path`` (surrounding whitespace dropped); ConfigError."""
    try:
        # As every file someone else could plant (never a FIFO or a device, within a
        # limit); links followed: a Kubernetes Secret volume is made of them.
        secret = read_regular(path, SECRET_LIMIT, follow_links=True).strip()
    except OSError as exc:
        raise ConfigError(
            f"admin.mlflow_webhook_secret_file: cannot read {path}: {exc.strerror or exc}"
        ) from exc
    except StoreError as exc:
        raise ConfigError(f"admin.mlflow_webhook_secret_file: cannot read {exc}") from exc
    if len(secret) < 16:
        raise ConfigError(
            f"admin.mlflow_webhook_secret_file: {path} holds under 16 bytes; use a long secret"
        )
    return secret


def sign(secret: bytes, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for this delivery."""
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, content, hashlib.sha256).digest()
    return f"{_SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


class MlflowWebhook:
    """Checks deliveries and wakes the models that follow the alias named.

    ``models``: the models configured now (read at each delivery, so a reloaded
    configuration counts); ``wake`` queues passes (the POST /sync path)."""

    def __init__(
        self,
        secret: bytes,
        models: Callable[[], Iterable[ModelConfig]],
        wake: Callable[[list[str]], Sequence[str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._models = models
        self._wake = wake
        self._clock = clock

    def deliver(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """Check one delivery and act on it; never raises for what the sender wrote."""
        refused = self._check(headers, body)
        if refused is not None:
            return refused
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            return Delivery(400, {"error": "body is not JSON"})
        if not isinstance(event, dict):
            return Delivery(400, {"error": "body is not a JSON object"})
        entity, action, data = event.get("entity"), event.get("action"), event.get("data")
        if entity != "model_version_alias" or not isinstance(data, dict):
            # Other registry events (a new version, tags) do not move an alias.
            return Delivery(202, {"queued": [], "ignored": f"event {str(entity)[:64]!r}"})
        name, alias = data.get("name"), data.get("alias")
        if not isinstance(name, str) or not isinstance(alias, str):
            return Delivery(400, {"error": "data.name and data.alias must be strings"})
        models = sorted(
            model.name for model in self._models() if _follows(model.source) == (name, alias)
        )
        queued = list(self._wake(models)) if models else []
        return Delivery(202, {"queued": queued, "action": str(action)[:16]})

    def _check(self, headers: Mapping[str, str], body: bytes) -> Delivery | None:
        """None when the delivery is signed with the secret and fresh; else the refusal."""
        signature = headers.get("X-MLflow-Signature", "")
        stamp = headers.get("X-MLflow-Timestamp", "")
        delivery = headers.get("X-MLflow-Delivery-Id", "")
        if not (signature and stamp and delivery):
            return Delivery(
                401, {"error": "missing X-MLflow-Signature, -Timestamp or -Delivery-Id"}
            )
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
            return Delivery(400, {"error": "X-MLflow-Timestamp is not Unix seconds"})
        if abs(self._clock() - int(stamp)) > MAX_SKEW_S:
            return Delivery(401, {"error": f"timestamp outside {MAX_SKEW_S:g}s of now (replay?)"})
        expected = sign(self._secret, delivery, stamp, body)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return Delivery(401, {"error": "bad signature"})
        return None


def _follows(source: str) -> tuple[str, str | None] | None:
    """(registered model, alias) of an MLflow source; None for any other source."""
    if not source.startswith("mlflow+"):
        return None
    try:
        _, model, alias = parse_mlflow_url(source)
    except ValueError:
        return None
    return model, alias
