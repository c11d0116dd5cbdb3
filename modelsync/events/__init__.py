"""Bucket events that wake a pass early (docs/push.md): ``[[events]]`` sources, each
read by its own thread, routed by the hub to the models whose objects they name.

  match.py   which objects wake which model
  source.py  the seam a queue fills; sqs.py (S3 via SQS/SNS/EventBridge),
             azqueue.py (Azure Event Grid via a Storage Queue), pubsub.py (GCS via
             Pub/Sub)
  runner.py  one thread per source: long-poll, deliver, delete, back off
  hub.py     filter, de-duplicate, wake through the daemon's "sync now" path; health
  push.py    the daemon's side: the hub and a runner per source, started and stopped
  __init__   the configuration (light: the config loads it on every command, so the
             hub, its runners and prometheus_client are imported only by push.py)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelsync.events.match import ObjectEvent
from modelsync.events.source import EventSource

__all__ = ["KINDS", "EventsConfig", "Kind"]


@dataclass(frozen=True)
class Kind:
    """One kind of event source: its options model, how to open it, how to read it."""

    options: type[BaseModel]
    open: Callable[[Any, str], EventSource]
    parse: Callable[[bytes], list[ObjectEvent]]


def _sqs() -> Kind:
    from modelsync.events import sqs

    return Kind(sqs.SqsOptions, sqs.SqsSource, sqs.parse)


def _azure_queue() -> Kind:
    from modelsync.events import azqueue

    return Kind(azqueue.AzureQueueOptions, azqueue.AzureQueueSource, azqueue.parse)


def _pubsub() -> Kind:
    from modelsync.events import pubsub

    return Kind(pubsub.PubSubOptions, pubsub.PubSubSource, pubsub.parse)


# Imported when used: a config with no events pays for none of the SDKs.
KINDS: dict[str, Callable[[], Kind]] = {
    "sqs": _sqs,
    "azure-queue": _azure_queue,
    "pubsub": _pubsub,
}


class EventsConfig(BaseModel):
    """``[[events]]``: one queue, waking the models it lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    # The models this source wakes (one queue may carry several models' events).
    models: tuple[str, ...] = Field(min_length=1)
    # The kind's own keys (docs/push.md), checked by its module.
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind_options(self) -> EventsConfig:
        if self.kind not in KINDS:
            raise ValueError(
                f"kind: unknown event source {self.kind!r}; one of " + ", ".join(KINDS)
            )
        try:
            KINDS[self.kind]().options.model_validate(self.options)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            where = f"options.{key}" if key else "options"
            raise ValueError(f"{where}: {msg.removeprefix('Value error, ')}") from exc
        return self

    @property
    def name(self) -> str:
        return f"{self.kind}:" + ",".join(self.models)
