"""Google Cloud Storage notifications read from a Pub/Sub subscription.

GCS publishes an ``OBJECT_FINALIZE`` message to a topic for each object written; the
message's attributes name the bucket, object and generation (its payload, the object
resource, is not read: an event is never trusted content). A Pub/Sub message goes to
one reader per subscription, so for a fleet each host needs its own subscription:
with ``topic`` the host creates ``modelsync-<identity>`` at start, with an expiration
policy (Pub/Sub deletes it after ``expiration`` without readers, so a host that
never comes back leaves nothing behind), and deletes it at stop.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelsync.events.match import ObjectEvent, event_time
from modelsync.events.source import Delivery, EventSourceError
from modelsync.units import Duration

__all__ = ["PubSubOptions", "PubSubSource", "parse"]

# Messages asked for per pull.
_BATCH = 32
_PATH = r"^projects/[a-z][a-z0-9-]{{4,28}}[a-z0-9]/{}/[A-Za-z][A-Za-z0-9._~+%-]{{2,254}}$"


class PubSubOptions(BaseModel):
    """``[[events]] kind = "pubsub"``: its ``options``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A subscription this host reads: projects/<p>/subscriptions/<s> ...
    subscription: str | None = Field(default=None, pattern=_PATH.format("subscriptions"))
    # ... or the topic GCS notifies, projects/<p>/topics/<t>: the host subscribes itself.
    topic: str | None = Field(default=None, pattern=_PATH.format("topics"))
    # A host's own subscription is deleted by Pub/Sub after this long without a
    # reader (at least a day, Pub/Sub's minimum).
    expiration: Duration = Field(default=86400.0, ge=86400.0)
    # How long one pull waits for messages: an idle host pulls once per ``wait``.
    wait: Duration = Field(default=20.0, ge=1.0, le=300.0)

    @model_validator(mode="after")
    def _one(self) -> PubSubOptions:
        if (self.subscription is None) == (self.topic is None):
            raise ValueError("give exactly one of subscription and topic")
        return self


def parse(body: bytes) -> list[ObjectEvent]:
    """The object a notification announces (none for other event types); raises
    ValueError when the message does not carry GCS's notification attributes."""
    try:
        attributes = json.loads(body)["attributes"]
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a Pub/Sub message: {exc}") from None
    if not isinstance(attributes, dict):
        raise ValueError("attributes are not a map")
    kind = attributes.get("eventType")
    if not isinstance(kind, str):
        raise ValueError("no eventType attribute: not a GCS notification")
    if kind != "OBJECT_FINALIZE":
        return []
    bucket, key = attributes.get("bucketId"), attributes.get("objectId")
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise ValueError("an OBJECT_FINALIZE notification without bucketId and objectId")
    identity = str(attributes.get("objectGeneration", ""))
    return [ObjectEvent(bucket, key, event_time(attributes.get("eventTime")), identity)]


def _envelope(attributes: dict[str, str], data: bytes) -> bytes:
    """One message as the bytes the runner sizes and parse() reads."""
    doc = {"attributes": attributes, "data": base64.b64encode(data).decode()}
    return json.dumps(doc).encode()


class PubSubSource:
    """A Pub/Sub subscription, configured or created for this host (``options.topic``).

    Credentials: Application Default Credentials; PUBSUB_EMULATOR_HOST points the
    client at the emulator.
    """

    def __init__(self, options: PubSubOptions, identity: str) -> None:
        self._options = options
        # Made by start, on the runner's thread: the client looks up Application
        # Default Credentials (a metadata server's ping) as it is made, which held the
        # daemon's main loop (start-up, a reload) for as long as the server dripped.
        self._client: Any = None
        if options.topic is not None:
            project = options.topic.split("/")[1]
            name = "modelsync-" + re.sub(r"[^A-Za-z0-9_-]", "-", identity)[:200]
            self._subscription = f"projects/{project}/subscriptions/{name}"
        else:
            self._subscription = str(options.subscription)
        self._created = False
        self._closing = threading.Event()

    @property
    def subscription(self) -> str:
        return self._subscription

    def start(self) -> None:
        if self._client is None:
            from google.cloud import pubsub_v1

            try:
                self._client = pubsub_v1.SubscriberClient()
            except Exception as exc:  # google-auth's DefaultCredentialsError, and the like
                raise EventSourceError(
                    f"cannot make the Pub/Sub client: {_first_line(exc)}"
                ) from exc
        if self._options.topic is None or self._created:
            return
        from google.api_core import exceptions

        try:
            self._client.create_subscription(
                request={
                    "name": self._subscription,
                    "topic": self._options.topic,
                    "expiration_policy": {"ttl": {"seconds": int(self._options.expiration)}},
                }
            )
        except exceptions.AlreadyExists:
            pass  # this host's, left by a crash: take it back
        except Exception as exc:  # google-api-core's errors, and gRPC's
            raise EventSourceError(
                f"cannot create subscription {self._subscription} to {self._options.topic}: "
                f"{_first_line(exc)}"
            ) from exc
        self._created = True

    def receive(self) -> list[Delivery]:
        from google.api_core import exceptions

        began = time.monotonic()
        try:
            answer = self._client.pull(
                request={"subscription": self._subscription, "max_messages": _BATCH},
                timeout=self._options.wait,
            )
            received = list(answer.received_messages)
        except exceptions.DeadlineExceeded:
            received = []
        except Exception as exc:
            raise EventSourceError(
                f"cannot pull from {self._subscription}: {_first_line(exc)}"
            ) from exc
        if not received:
            # A pull may come back empty at once: never ask more than once per wait.
            self._closing.wait(max(0.0, self._options.wait - (time.monotonic() - began)))
        return [
            Delivery(_envelope(dict(m.message.attributes), m.message.data), m.ack_id)
            for m in received
        ]

    def ack(self, deliveries: list[Delivery]) -> None:
        try:
            self._client.acknowledge(
                request={
                    "subscription": self._subscription,
                    "ack_ids": [d.receipt for d in deliveries],
                }
            )
        except Exception as exc:
            raise EventSourceError(
                f"cannot acknowledge on {self._subscription}: {_first_line(exc)}"
            ) from exc

    def stop(self) -> None:
        self._closing.set()
        if self._client is None:
            return
        if self._options.topic is not None and self._created:
            # Stopping: a subscription left behind is swept by its expiration policy.
            with contextlib.suppress(Exception):
                self._client.delete_subscription(request={"subscription": self._subscription})
            self._created = False
        self._client.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
