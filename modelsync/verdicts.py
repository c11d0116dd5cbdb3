"""What the live checks said about a revision that loaded: the smoke requests and the bake.

One typed record, below the pass, shared by what produces it (the smoke requests and
the bake window, after the server confirmed the load) and what reads it (the host's
report in the bucket, the halt rules, ``release status``, the status page, metrics).
Every figure is optional: a server that exposes no metric for the version, or a bake
that saw too few requests, leaves it ``None`` rather than a made-up zero.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BakeVerdict", "LiveChecks", "SmokeVerdict", "WindowFigures"]

_MAX_REASON = 2000


class _Record(BaseModel):
    # Reports come back from the bucket, written by anyone who can write there:
    # strict types, no NaN/inf, unknown keys ignored (newer writers).
    model_config = ConfigDict(
        extra="ignore", strict=True, frozen=True, allow_inf_nan=False, defer_build=True
    )


class SmokeVerdict(_Record):
    """The smoke requests sent to the new version before it counted as served."""

    verdict: Literal["passed", "failed", "skipped"]
    requests: int = Field(default=0, ge=0, le=10_000)
    # For a failure, the first difference: "outputs[0][3] = nan, expected 0.71 ± 0.01".
    reason: str = Field(default="", max_length=_MAX_REASON)


class WindowFigures(_Record):
    """One version's traffic over one window, from the server's own metrics."""

    requests: int = Field(default=0, ge=0)
    error_ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    latency_p50_s: float | None = Field(default=None, ge=0.0)
    latency_p99_s: float | None = Field(default=None, ge=0.0)
    # Mean latency (a duration sum over a count: Triton and MLServer have no histogram).
    latency_mean_s: float | None = Field(default=None, ge=0.0)
    # The window these figures span; None: since the server loaded the version.
    window_s: float | None = Field(default=None, ge=0.0)


class BakeVerdict(_Record):
    """The bake window: the new version's figures beside the previous revision's."""

    verdict: Literal["baking", "passed", "failed", "inconclusive"]
    window_s: float = Field(default=0.0, ge=0.0)
    # Seconds of the bake still to run (``baking`` only).
    remaining_s: float = Field(default=0.0, ge=0.0)
    current: WindowFigures = Field(default_factory=WindowFigures)
    # The previous revision over an equal window before the swap (None: there was none).
    previous: WindowFigures | None = None
    # For a failure, the figures that crossed: "error ratio 0.21 > 0.05 (previous 0.00)".
    reason: str = Field(default="", max_length=_MAX_REASON)


class LiveChecks(_Record):
    """Both checks of one revision on one host; either may be absent (not configured)."""

    smoke: SmokeVerdict | None = None
    bake: BakeVerdict | None = None
