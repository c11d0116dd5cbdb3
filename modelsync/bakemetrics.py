"""Prometheus metrics of the bake and of canaries halted by live figures (issue 24).

Own module so that the bake's gauges sit beside each other; ``Metrics`` (modelsync
.metrics) makes one on its registry and folds every pass's result into it.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

from modelsync.outcome import PassResult
from modelsync.verdicts import WindowFigures

__all__ = ["LIVE_RULES", "BakeMetrics"]

# Halt rules that read the hosts' live checks (smoke, bake): modelsync.sync.policy.halt.
LIVE_RULES = ("failed_checks", "cohort_median")


def _latency(figures: WindowFigures | None) -> float | None:
    if figures is None:
        return None
    return figures.latency_mean_s if figures.latency_mean_s is not None else figures.latency_p99_s


class BakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.remaining = Gauge(
            "modelsync_bake_remaining_seconds",
            "Seconds left in the active revision's bake (0: not baking).",
            ["model"],
            registry=registry,
        )
        self.verdicts = Counter(
            "modelsync_bake_verdicts",
            "Bakes ended, by verdict (passed, failed, inconclusive).",
            ["model", "verdict"],
            registry=registry,
        )
        self.error_ratio = Gauge(
            "modelsync_bake_error_ratio",
            "Error ratio over the bake's window: revision=new (so far) or previous.",
            ["model", "revision"],
            registry=registry,
        )
        self.latency = Gauge(
            "modelsync_bake_latency_seconds",
            "Mean latency over the bake's window (p99 without a mean): revision=new or previous.",
            ["model", "revision"],
            registry=registry,
        )
        self.halted_live = Gauge(
            "modelsync_channel_halted_live",
            "1 when the channel's canary is halted by a live-check rule (failed smoke or "
            "bake on enough hosts, or the cohort's median figures).",
            ["model"],
            registry=registry,
        )

    def record(self, result: PassResult) -> None:
        model, bake = result.model, result.bake
        if result.channel is not None:
            live = result.channel.halted and result.channel.halt_rule in LIVE_RULES
            self.halted_live.labels(model).set(1 if live else 0)
        if bake is None:
            return
        baking = bake.verdict == "baking"
        self.remaining.labels(model).set(bake.remaining_s if baking else 0)
        if not baking:
            self.verdicts.labels(model, bake.verdict).inc()
        for revision, figures in (("new", bake.current), ("previous", bake.previous)):
            for gauge, value in (
                (self.error_ratio, figures.error_ratio if figures else None),
                (self.latency, _latency(figures)),
            ):
                if value is None:
                    with contextlib.suppress(KeyError):
                        gauge.remove(model, revision)
                else:
                    gauge.labels(model, revision).set(value)

    def forget(self, model: str) -> None:
        for gauge in (self.remaining, self.halted_live):
            with contextlib.suppress(KeyError):
                gauge.remove(model)
        for gauge in (self.error_ratio, self.latency):
            for revision in ("new", "previous"):
                with contextlib.suppress(KeyError):
                    gauge.remove(model, revision)
