"""Azure Blob events: Event Grid delivers ``Microsoft.Storage.BlobCreated`` events to
an Azure Storage Queue, read here.

Both of Event Grid's schemas are read (its own, and CloudEvents 1.0), base64-encoded
as Event Grid writes them to a queue or plain. A Storage Queue has no long poll: an
idle host asks once per ``wait``. For a fleet each host reads its own queue (a queue
message goes to one reader), each fed by its own Event Grid subscription: ``queue``
may hold ``{identity}``, replaced by the host's identity (docs/push.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from modelsync.events.match import ObjectEvent, event_time
from modelsync.events.source import Delivery, EventSourceError
from modelsync.units import Duration

__all__ = ["AzureQueueOptions", "AzureQueueSource", "parse"]

# Messages asked for per request (the service's own limit).
_BATCH = 32
_SUBJECT = re.compile(r"^/blobServices/default/containers/([^/]+)/blobs/(.+)$")
_ACCOUNT = re.compile(r"/storageAccounts/([^/]+)$")


class AzureQueueOptions(BaseModel):
    """``[[events]] kind = "azure-queue"``: its ``options``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The queue's name; "{identity}" in it becomes this host's identity.
    queue: str = Field(pattern=r"^[a-z0-9{}-]{3,63}$")
    # https://<account>.queue.core.windows.net (credentials: DefaultAzureCredential) ...
    account_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    # ... or a connection string (or AZURE_STORAGE_CONNECTION_STRING). Never logged.
    connection_string: SecretStr | None = None
    # The time between two reads of an idle queue.
    wait: Duration = Field(default=20.0, ge=1.0, le=300.0)

    @model_validator(mode="after")
    def _where(self) -> AzureQueueOptions:
        if (self.account_url is None) == (self.connection_string is None):
            raise ValueError("give exactly one of account_url and connection_string")
        if self.connection_string is not None:
            _check_connection_string(self.connection_string.get_secret_value())
        return self


def _check_connection_string(text: str) -> None:
    """What the SDK refuses when the source is opened, refused when the config loads
    (the SDK's own rule; the string holds the account key, so it is never quoted)."""
    pairs = [part.split("=", 1) for part in text.rstrip(";").split(";")]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError("connection_string: not key=value pairs separated by ';'")
    keys = {key.upper(): value for key, value in pairs}
    if keys.get("USEDEVELOPMENTSTORAGE") != "true" and not keys.keys() & {
        "ACCOUNTNAME",
        "QUEUEENDPOINT",
    }:
        raise ValueError("connection_string: names neither AccountName nor QueueEndpoint")


def _event(doc: Any) -> ObjectEvent | None:
    if not isinstance(doc, dict):
        raise ValueError("an event that is not a JSON object")
    kind = doc.get("eventType", doc.get("type"))
    if not isinstance(kind, str):
        raise ValueError("an event without eventType (Event Grid) or type (CloudEvents)")
    if kind != "Microsoft.Storage.BlobCreated":
        return None
    subject, topic = doc.get("subject"), doc.get("topic", doc.get("source"))
    found = _SUBJECT.match(subject) if isinstance(subject, str) else None
    account = _ACCOUNT.search(topic) if isinstance(topic, str) else None
    if found is None or account is None:
        raise ValueError("a BlobCreated event without a blob subject and storage account topic")
    data = doc.get("data")
    if not isinstance(data, dict):
        data = {}
    identity = f"{doc.get('id', '')}/{data.get('eTag', '')}/{data.get('sequencer', '')}"
    when = event_time(doc.get("eventTime", doc.get("time")))
    return ObjectEvent(f"{account[1]}/{found[1]}", unquote(found[2]), when, identity)


def parse(body: bytes) -> list[ObjectEvent]:
    """The blobs a queue message announces; raises ValueError when it is not Event
    Grid events (other event types announce nothing)."""
    text = body.strip()
    if text[:1] not in (b"{", b"["):
        try:
            text = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("neither JSON nor base64-encoded JSON") from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    docs = doc if isinstance(doc, list) else [doc]
    return [e for d in docs if (e := _event(d)) is not None]


class AzureQueueSource:
    """A Storage Queue named by ``options.queue``."""

    def __init__(self, options: AzureQueueOptions, identity: str) -> None:
        from azure.storage.queue import QueueClient

        self._options = options
        self._name = options.queue.replace(
            "{identity}", re.sub(r"[^a-z0-9-]", "-", identity.lower())
        )
        if options.connection_string is not None:
            self._client = QueueClient.from_connection_string(
                options.connection_string.get_secret_value(), self._name
            )
        else:
            from azure.identity import DefaultAzureCredential

            self._client = QueueClient(
                str(options.account_url), self._name, credential=DefaultAzureCredential()
            )
        self._closing = threading.Event()

    def start(self) -> None:
        return  # the queue and its Event Grid subscription belong to the deployment

    def receive(self) -> list[Delivery]:
        try:
            messages = list(
                self._client.receive_messages(max_messages=_BATCH, visibility_timeout=60)
            )
        except Exception as exc:  # azure-core's errors, and connection errors
            raise EventSourceError(
                f"cannot read queue {self._name}: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        if not messages:
            self._closing.wait(self._options.wait)
        return [
            Delivery(str(m.content or "").encode(), f"{m.id}\n{m.pop_receipt}") for m in messages
        ]

    def ack(self, deliveries: list[Delivery]) -> None:
        try:
            for delivery in deliveries:
                message_id, _, receipt = delivery.receipt.partition("\n")
                self._client.delete_message(message_id, receipt)
        except Exception as exc:
            raise EventSourceError(
                f"cannot delete messages from queue {self._name}: {_first_line(exc)}"
            ) from exc

    def stop(self) -> None:
        self._closing.set()
        self._client.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
