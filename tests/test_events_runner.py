"""A source's reader thread survives whatever one message or one read throws at it."""

from __future__ import annotations

import json
import queue
import time

from prometheus_client import CollectorRegistry

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.events import sqs
from modelsync.events.hub import EventHub, EventMetrics, SourceHealth
from modelsync.events.match import Matcher
from modelsync.events.runner import SourceRunner
from modelsync.events.source import Delivery


class _ListSource:
    """An in-memory queue: each receive hands out the next body, or raises the next
    exception (what an SDK may throw that is not an EventSourceError)."""

    def __init__(self, items: list[bytes | Exception]) -> None:
        self._items = items
        self.acked: list[bytes] = []

    def start(self) -> None:
        return

    def receive(self) -> list[Delivery]:
        if not self._items:
            time.sleep(0.02)
            return []
        item = self._items.pop(0)
        if isinstance(item, Exception):
            raise item
        return [Delivery(item, str(len(self.acked)))]

    def ack(self, deliveries: list[Delivery]) -> None:
        self.acked += [d.body for d in deliveries]

    def stop(self) -> None:
        return


def _notification(version: int) -> bytes:
    key = f"models/ranker/{version}/modelsync-manifest.json"
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": key}},
    }
    return json.dumps({"Records": [record]}).encode()


def test_a_poison_message_and_a_surprise_from_the_sdk_do_not_end_the_reader() -> None:
    """A message nested past the JSON parser is counted malformed and deleted; a read
    raising an unexpected exception marks the source failing with its reason; the
    next notification still wakes the model, and the source is up again."""
    registry = CollectorRegistry()
    woken: queue.Queue[list[str]] = queue.Queue()
    hub = EventHub(
        Matcher([ModelConfig(name="ranker", source="s3://b/models/ranker")]),
        woken.put,
        lambda _model: None,
        EventMetrics(registry),
    )
    hub.add_source(SourceHealth("sqs:ranker", "sqs", ("ranker",)))
    poison = b"[" * 60_000
    source = _ListSource([poison, RuntimeError("an SDK's\nsurprise"), _notification(2)])
    runner = SourceRunner("sqs:ranker", source, sqs.parse, ("ranker",), hub)
    runner.start()
    try:
        assert woken.get(timeout=5) == ["ranker"]
    finally:
        runner.stop(1.0, CancelToken(deadline=time.monotonic() + 5))
    assert source.acked == [poison, _notification(2)]
    assert (
        registry.get_sample_value("modelsync_events_malformed_total", {"source": "sqs:ranker"}) == 1
    )
    (health,) = hub.sources()
    assert health.up and health.last_error is None
    assert hub.degraded() == []


def test_a_failing_read_is_reported_with_its_reason() -> None:
    """Until the source answers again, an unexpected exception leaves it failing, its
    reason one line naming the exception's type, in /readyz's degraded list."""
    hub = EventHub(
        Matcher([]), lambda _models: None, lambda _model: None, EventMetrics(CollectorRegistry())
    )
    hub.add_source(SourceHealth("sqs:ranker", "sqs", ("ranker",)))
    runner = SourceRunner(
        "sqs:ranker", _ListSource([RuntimeError("an SDK's\nsurprise")]), sqs.parse, ("ranker",), hub
    )
    runner.start()
    deadline = time.monotonic() + 5
    while not hub.degraded():
        assert time.monotonic() < deadline, "the failure was not recorded"
        time.sleep(0.01)
    runner.stop(1.0, CancelToken(deadline=time.monotonic() + 5))
    assert hub.degraded() == ["events sqs:ranker: RuntimeError: an SDK's"]
