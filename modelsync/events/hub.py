"""Where bucket events become wake-ups: counted, filtered, de-duplicated, and handed to
the daemon's "sync now" path (the same one as POST /sync, so the scheduler's minimum
gap coalesces them); and where each event source's health is kept for /readyz,
status, metrics and logs.

An event is never trusted content. Its only power is to start a pass early, and the
pass reads the bucket as always. Its content is used only to skip a wake that cannot
change anything: a manifest of a version this host already serves or has passed
(a duplicate, a replay, or one that arrived out of order), or the same notification
again within ``DEDUPE_WINDOW``. Neither can hide a real new revision: its own
notification names its own, newer version, and the poll still runs.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelsync.events.match import Matcher, ObjectEvent

__all__ = ["DEDUPE_WINDOW", "EventHub", "EventMetrics", "SourceHealth"]

# The same notification seen again within this many seconds wakes nothing.
DEDUPE_WINDOW = 300.0
# Notifications remembered for de-duplication (oldest forgotten first).
_DEDUPE_SIZE = 4096
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


class EventMetrics:
    """The ``modelsync_events_*`` metrics, on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "modelsync_events_received",
            "Notifications received from an event source.",
            ["source"],
            registry=registry,
        )
        self.ignored = Counter(
            "modelsync_events_ignored",
            "Notifications that woke nothing (another object, model or bucket; a version "
            "already served; a duplicate).",
            ["source"],
            registry=registry,
        )
        self.malformed = Counter(
            "modelsync_events_malformed",
            "Messages that were not a notification modelsync reads (or too large): "
            "counted and deleted.",
            ["source"],
            registry=registry,
        )
        self.wakeups = Counter(
            "modelsync_events_wakeups",
            "Passes asked for by an event.",
            ["model"],
            registry=registry,
        )
        self.up = Gauge(
            "modelsync_events_source_up",
            "1 while the event source answers, 0 while it fails (the poll covers).",
            ["source"],
            registry=registry,
        )
        self.wakeup_latency = Histogram(
            "modelsync_events_wakeup_latency_seconds",
            "From the event's own time to the start of the pass it asked for.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )


@dataclass
class SourceHealth:
    """One event source as /readyz and status report it."""

    name: str
    kind: str
    models: tuple[str, ...]
    up: bool = False
    failures: int = 0
    last_error: str | None = None
    last_message_at: float | None = None


class EventHub:
    """Routes object events to ``wake(models)`` and keeps the sources' health.

    ``served(model)`` is the newest version the host serves or has passed over for
    ``model`` (None: none); ``wall`` is the clock event times are compared with.
    """

    def __init__(
        self,
        matcher: Matcher,
        wake: Callable[[list[str]], None],
        served: Callable[[str], int | None],
        metrics: EventMetrics,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._matcher = matcher
        self._wake = wake
        self._served = served
        self.metrics = metrics
        self._wall = wall
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()
        # The oldest event time not yet answered by a pass, per model.
        self._pending: dict[str, float] = {}
        self._sources: dict[str, SourceHealth] = {}
        self._log = structlog.get_logger()

    # -- the sources ------------------------------------------------------------------

    def add_source(self, health: SourceHealth) -> None:
        with self._lock:
            self._sources[health.name] = health
        self.metrics.up.labels(health.name).set(0)

    def sources(self) -> list[SourceHealth]:
        with self._lock:
            return [SourceHealth(**vars(s)) for s in self._sources.values()]

    def source_up(self, name: str) -> None:
        with self._lock:
            health = self._sources[name]
            was_failing, failures = health.last_error is not None, health.failures
            health.up, health.failures, health.last_error = True, 0, None
        self.metrics.up.labels(name).set(1)
        if was_failing:
            self._log.info("event source recovered", source=name, after_failures=failures)

    def source_failed(self, name: str, error: str) -> int:
        """Record a failure of ``name``; returns the failures in a row."""
        with self._lock:
            health = self._sources[name]
            health.up = False
            health.failures += 1
            health.last_error = error
            failures = health.failures
        self.metrics.up.labels(name).set(0)
        # Once, then every tenth: a queue gone for hours must not flood the log.
        if failures == 1 or failures % 10 == 0:
            self._log.warning(
                "event source failing; polling covers",
                source=name,
                error=error,
                failures=failures,
            )
        return failures

    def degraded(self) -> list[str]:
        """Why an event source does not deliver, one line each ([] when all do)."""
        with self._lock:
            return [
                f"events {s.name}: {s.last_error}"
                for s in self._sources.values()
                if s.last_error is not None
            ]

    # -- the events -------------------------------------------------------------------

    def malformed(self, source: str, why: str) -> None:
        self.metrics.malformed.labels(source).inc()
        self._log.info("event message ignored: malformed", source=source, reason=why)

    def deliver(self, source: str, events: list[ObjectEvent], models: tuple[str, ...]) -> None:
        """Wake each of ``models`` that one of ``events`` concerns, once for the batch."""
        with self._lock:
            self._sources[source].last_message_at = self._wall()
        woken: dict[str, float] = {}
        now = time.monotonic()
        for event in events:
            self.metrics.received.labels(source).inc()
            hits = [h for h in self._matcher.match(event) if h.model in models]
            fresh = [
                h for h in hits if h.version is None or h.version > (self._served(h.model) or 0)
            ]
            if not fresh or self._duplicate(event, now):
                self.metrics.ignored.labels(source).inc()
                continue
            for hit in fresh:
                when = event.time if event.time is not None else self._wall()
                woken[hit.model] = min(woken.get(hit.model, when), when)
        if not woken:
            return
        with self._lock:
            for model, when in woken.items():
                self._pending[model] = min(self._pending.get(model, when), when)
        for model in woken:
            self.metrics.wakeups.labels(model).inc()
        self._log.debug("event wakes a pass", source=source, models=sorted(woken))
        self._wake(sorted(woken))

    def _duplicate(self, event: ObjectEvent, now: float) -> bool:
        key = f"{event.bucket}\x00{event.key}\x00{event.identity}"
        with self._lock:
            while self._seen and (
                len(self._seen) > _DEDUPE_SIZE
                or next(iter(self._seen.values())) < now - DEDUPE_WINDOW
            ):
                self._seen.popitem(last=False)
            if key in self._seen:
                return True
            self._seen[key] = now
            return False

    def pass_started(self, model: str) -> None:
        """A pass of ``model`` starts: it answers the events that asked for it."""
        with self._lock:
            when = self._pending.pop(model, None)
        if when is not None:
            self.metrics.wakeup_latency.labels(model).observe(max(0.0, self._wall() - when))
