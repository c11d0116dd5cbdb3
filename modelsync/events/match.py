"""Which bucket objects wake which model: the manifest that completes a revision, a
complete-marker for producers without one, and the model's channel pointer.

Everything else an event may name (the revision's other files, reports, objects of
another prefix or bucket) is ignored: those objects never change what a pass would
decide, so waking for them would only cost requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from modelsync.manifest import MANIFEST_NAME, parse_version

if TYPE_CHECKING:  # config.py imports this package
    from modelsync.config import ModelConfig

__all__ = ["Hit", "Matcher", "ObjectEvent", "event_time"]


@dataclass(frozen=True)
class ObjectEvent:
    """What one notification says happened: an object written at ``key`` in
    ``bucket`` (for Azure ``account/container``). Never trusted: only a hint."""

    bucket: str
    key: str
    # The event's own time (Unix seconds), None when the message carries none.
    time: float | None
    # What distinguishes this notification from a duplicate of it (etag, sequencer,
    # event id): duplicates within a window wake once.
    identity: str


@dataclass(frozen=True)
class Hit:
    """``model`` should pass; ``version`` is the revision the object completes (None
    for a channel pointer, which may name any version)."""

    model: str
    version: int | None


def _location(source: str) -> tuple[str, str] | None:
    """(bucket, key prefix ending in "/") of a bucket source; None for file://."""
    parts = urlsplit(source)
    path = parts.path.strip("/")
    if parts.scheme in ("s3", "gs"):
        bucket = parts.netloc
    elif parts.scheme == "az":
        container, _, path = path.partition("/")
        bucket = f"{parts.netloc}/{container}"
    else:
        return None
    return bucket, (path + "/" if path else "")


class Matcher:
    """Maps an object event to the models it may concern, among ``models``."""

    def __init__(self, models: list[ModelConfig]) -> None:
        self._models = [(m, loc) for m in models if (loc := _location(m.source)) is not None]

    def match(self, event: ObjectEvent) -> list[Hit]:
        # Here, not at the top: the config imports this package, and a sync of a model
        # without a channel should not load the channel code (tests/test_entry.py).
        from modelsync.channel import channel_key

        hits = []
        for model, (bucket, prefix) in self._models:
            if event.bucket != bucket or not event.key.startswith(prefix):
                continue
            rest = event.key[len(prefix) :]
            if model.channel is not None and rest == channel_key(model.channel):
                hits.append(Hit(model.name, None))
                continue
            head, _, name = rest.partition("/")
            version = parse_version(head)
            marker = model.complete_marker or MANIFEST_NAME
            if version is not None and name == marker:
                hits.append(Hit(model.name, version))
        return hits


def event_time(text: Any) -> float | None:
    """An event's RFC 3339 time as a Unix time; None when it is missing or not a time
    (the time only feeds the wake-up latency metric, never a decision)."""
    if not isinstance(text, str):
        return None
    # Event Grid writes seven fractional digits; fromisoformat takes at most six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
