"""The bake's configuration models ([models.bake] and the series a server's metrics
hold), apart from the scrape (modelsync.metricsread) and the judge (modelsync.bakejudge):
the config loads these on every command, and a model that does not bake needs neither.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelsync.units import Duration

__all__ = ["BakeConfig", "MetricSeries"]

_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"


class MetricSeries(BaseModel):
    """Which series of a server's /metrics hold one model's traffic. Every name is a
    sample name as it appears in the text (``..._total`` included)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The label that holds the model's name.
    model_label: str = Field(default="model", pattern=_NAME)
    # Counters of answered and of failed requests (either may be absent).
    success: str | None = Field(default=None, pattern=_NAME)
    failure: str | None = Field(default=None, pattern=_NAME)
    # A counter of all requests, for servers with no success/failure pair.
    requests: str | None = Field(default=None, pattern=_NAME)
    # A cumulative duration and the count it is over (mean latency); the count
    # defaults to the requests.
    duration_sum: str | None = Field(default=None, pattern=_NAME)
    duration_count: str | None = Field(default=None, pattern=_NAME)
    # Seconds per unit of duration_sum (Triton counts microseconds: 1e-6).
    duration_scale: float = Field(default=1.0, gt=0)
    # A latency histogram in seconds, by its base name (p50 and p99 from ``_bucket``).
    histogram: str | None = Field(default=None, pattern=_NAME)

    def names(self) -> set[str]:
        named = {self.success, self.failure, self.requests, self.duration_sum}
        named.add(self.duration_count)
        if self.histogram:
            named |= {f"{self.histogram}_bucket", f"{self.histogram}_count"}
        return {n for n in named if n}


class BakeConfig(BaseModel):
    """[models.bake]: bake a confirmed revision on the server's own metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: Duration = Field(default=300.0, gt=0)
    error_ratio_max: float = Field(default=0.05, ge=0.0, le=1.0)
    latency_ratio_max: float = Field(default=1.5, ge=1.0)
    min_requests: int = Field(default=20, ge=1)
    inconclusive: Literal["pass", "fail"] = "pass"
    # The latency figure compared: "mean", or "p50"/"p99" (servers with a histogram).
    latency: Literal["mean", "p50", "p99"] = "mean"
    # The server's Prometheus text, and the series of the model's traffic there
    # (default: the server preset's; a custom server must give both).
    metrics_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    series: MetricSeries | None = None
    # One scrape's time limit.
    scrape_timeout: Duration = Field(default=5.0, gt=0)
