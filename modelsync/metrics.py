"""Prometheus metrics of the daemon, on a registry passed in (no global registry)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelsync.bakemetrics import BakeMetrics
from modelsync.outcome import Outcome, PassResult
from modelsync.state import ChannelInfo

__all__ = ["Metrics"]

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class _Freshness(Collector):
    """modelsync_revision_age_seconds, computed at scrape time from the creation times."""

    def __init__(
        self, created: dict[str, float], lock: threading.Lock, clock: Callable[[], float]
    ) -> None:
        self._created = created
        self._lock = lock
        self._clock = clock

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "modelsync_revision_age_seconds",
            "Now minus the creation time of the active revision (the model's freshness).",
            labels=["model"],
        )
        now = self._clock()
        with self._lock:
            for model, created in sorted(self._created.items()):
                family.add_metric([model], now - created)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.active_version = Gauge(
            "modelsync_active_version",
            "Version behind current (0: none).",
            ["model"],
            registry=registry,
        )
        self.sync_total = Counter(
            "modelsync_sync", "Sync passes by outcome.", ["model", "outcome"], registry=registry
        )
        self.last_success = Gauge(
            "modelsync_last_success_timestamp_seconds",
            "Unix time of the last pass that succeeded.",
            ["model"],
            registry=registry,
        )
        self.download_bytes = Counter(
            "modelsync_download_bytes", "Bytes fetched from storage.", ["model"], registry=registry
        )
        self.download_progress = Gauge(
            "modelsync_download_progress_bytes",
            "Bytes of the revision being downloaded that are in place (only while one runs).",
            ["model"],
            registry=registry,
        )
        self.duration = Histogram(
            "modelsync_sync_duration_seconds",
            "Duration of sync passes.",
            ["model"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.rollbacks = Counter(
            "modelsync_rollbacks",
            "Revisions the server failed to load, rolled back.",
            ["model"],
            registry=registry,
        )
        self.live_check_failures = Counter(
            "modelsync_live_check_failures",
            "Revisions that loaded but failed a live check (check: smoke), rolled back.",
            ["model", "check"],
            registry=registry,
        )
        self.rollback_failed = Gauge(
            "modelsync_rollback_failed",
            "1 when the previous revision also failed to confirm after a rollback.",
            ["model"],
            registry=registry,
        )
        self.waiting_version = Gauge(
            "modelsync_waiting_version",
            "A newer revision found but not brought in (the server does not answer); 0: none.",
            ["model"],
            registry=registry,
        )
        self.deferred_version = Gauge(
            "modelsync_deferred_version",
            "The newest revision passed over because it could not be fetched (not a refusal;"
            " an older one may stand in); 0: none.",
            ["model"],
            registry=registry,
        )
        self.consecutive_failures = Gauge(
            "modelsync_consecutive_failures",
            "Failed passes in a row.",
            ["model"],
            registry=registry,
        )
        self.stale = Gauge(
            "modelsync_stale",
            "1 when the active revision is older than max_age.",
            ["model"],
            registry=registry,
        )
        self.channel = Gauge(
            "modelsync_channel_info",
            "1 for the release channel a model follows, with its stable and canary versions.",
            ["model", "channel", "stable", "canary"],
            registry=registry,
        )
        self.in_cohort = Gauge(
            "modelsync_channel_in_cohort",
            "1 when this host is in the channel's canary cohort.",
            ["model"],
            registry=registry,
        )
        self.halted = Gauge(
            "modelsync_channel_halted",
            "1 when the channel's canary is halted (rolled back on enough hosts).",
            ["model"],
            registry=registry,
        )
        self.interval = Gauge(
            "modelsync_interval_seconds",
            "The configured time between passes (alert rules compare pass times with it).",
            registry=registry,
        )
        self.max_age = Gauge(
            "modelsync_max_age_seconds",
            "The model's configured max_age (present only when set).",
            ["model"],
            registry=registry,
        )
        self.bake = BakeMetrics(registry)
        self._channels: dict[str, tuple[str, str, str]] = {}
        self._created: dict[str, float] = {}
        self._lock = threading.Lock()
        registry.register(_Freshness(self._created, self._lock, clock))

    def record(
        self,
        result: PassResult,
        created: float | None,
        failures: int,
        stale: bool,
        rollback_failed: bool = False,
    ) -> None:
        """Fold one pass into the metrics."""
        model = result.model
        self.sync_total.labels(model, result.outcome.value).inc()
        self.duration.labels(model).observe(result.duration)
        self.download_bytes.labels(model).inc(result.stats.bytes_fetched)
        self.active_version.labels(model).set(result.active or 0)
        self.consecutive_failures.labels(model).set(failures)
        self.stale.labels(model).set(1 if stale else 0)
        self.rollback_failed.labels(model).set(1 if rollback_failed else 0)
        self.waiting_version.labels(model).set(result.waiting or 0)
        self.deferred_version.labels(model).set(max(result.deferred, default=0))
        if result.outcome is Outcome.ROLLED_BACK:
            self.rollbacks.labels(model).inc()
        live = result.live
        if live is not None and live.smoke is not None and live.smoke.verdict == "failed":
            self.live_check_failures.labels(model, "smoke").inc()
        if result.succeeded and not rollback_failed:
            self.last_success.labels(model).set_to_current_time()
        if result.channel is not None:
            self._record_channel(model, result.channel)
        self.bake.record(result)
        with self._lock:
            if created is None:
                self._created.pop(model, None)
            else:
                self._created[model] = created

    def _record_channel(self, model: str, info: ChannelInfo) -> None:
        labels = (info.channel, str(info.stable or ""), str(info.canary or ""))
        with self._lock:
            old = self._channels.get(model)
            self._channels[model] = labels
        if old is not None and old != labels:
            with contextlib.suppress(KeyError):
                self.channel.remove(model, *old)
        self.channel.labels(model, *labels).set(1)
        self.in_cohort.labels(model).set(1 if info.in_cohort else 0)
        self.halted.labels(model).set(1 if info.halted else 0)

    def configure(self, interval: float, max_ages: dict[str, float | None]) -> None:
        """Export the settings alert rules and dashboards compare with."""
        self.interval.set(interval)
        for model, max_age in max_ages.items():
            if max_age is None:
                with contextlib.suppress(KeyError):
                    self.max_age.remove(model)
            else:
                self.max_age.labels(model).set(max_age)

    def forget(self, model: str) -> None:
        """Stop reporting a model that left the configuration."""
        self.bake.forget(model)
        with self._lock:
            self._created.pop(model, None)
            old = self._channels.pop(model, None)
        if old is not None:
            with contextlib.suppress(KeyError):
                self.channel.remove(model, *old)
        for gauge in (self.in_cohort, self.halted, self.max_age):
            with contextlib.suppress(KeyError):
                gauge.remove(model)
        for metric in (
            self.active_version,
            self.last_success,
            self.consecutive_failures,
            self.stale,
            self.rollback_failed,
            self.waiting_version,
            self.deferred_version,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(model)
