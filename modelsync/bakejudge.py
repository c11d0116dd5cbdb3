"""The bake's verdict: two windows' figures in, a verdict out (options: modelsync.bakeconfig).

A revision that loaded and answered its smoke requests may still fail requests or
answer slowly under real traffic. For ``window`` after it is confirmed, the server's
own metrics (modelsync.metricsread) are compared with the previous revision's over
the window before the swap:

- error ratio: the new one's may exceed the previous one's by at most
  ``error_ratio_max`` (with no usable previous figure, 0 is the previous);
- latency: new / previous at most ``latency_ratio_max``, on the figure ``latency``
  names (the mean by default: every preset's server has it, and a p99 read off coarse
  histogram buckets over a few minutes is noisy; the mean when a window lacks the
  named one); skipped with no usable previous;
- fewer than ``min_requests`` requests to the new revision: no figure is trusted;
  the verdict is ``inconclusive``, which counts as ``inconclusive`` says.

Pure: the sync pass (modelsync.sync.bake) scrapes, journals and acts.
"""

from __future__ import annotations

from typing import Literal

from modelsync.bakeconfig import BakeConfig
from modelsync.verdicts import BakeVerdict, WindowFigures

__all__ = ["BakeConfig", "judge", "verdict_record"]


def _latency(figures: WindowFigures, which: str) -> float | None:
    return {
        "p50": figures.latency_p50_s,
        "p99": figures.latency_p99_s,
        "mean": figures.latency_mean_s,
    }[which]


def judge(
    config: BakeConfig, current: WindowFigures, previous: WindowFigures | None
) -> tuple[Literal["passed", "failed", "inconclusive"], str]:
    """The verdict on ``current`` beside ``previous``, and the figures behind it."""
    if current.requests < config.min_requests:
        why = f"{current.requests} requests < min_requests {config.min_requests}"
        if config.inconclusive == "fail":
            return "failed", f"inconclusive ({why}; inconclusive = fail)"
        return "inconclusive", why
    usable = previous if previous is not None and previous.requests >= config.min_requests else None
    crossed, said = [], []
    if current.error_ratio is not None:
        before = usable.error_ratio if usable is not None else None
        rise = current.error_ratio - (before or 0.0)
        shown = f"error ratio {current.error_ratio:.4f} (previous {_num(before)})"
        said.append(shown)
        if rise > config.error_ratio_max:
            crossed.append(f"{shown}: rise {rise:.4f} > error_ratio_max {config.error_ratio_max}")
    if usable is not None:
        which = config.latency
        if _latency(current, which) is None or _latency(usable, which) is None:
            which = "mean"
        name = f"{which} latency"
        now, before_latency = _latency(current, which), _latency(usable, which)
        if now is not None and before_latency:
            ratio = now / before_latency
            shown = f"{name} {now * 1000:.1f} ms (previous {before_latency * 1000:.1f} ms)"
            said.append(shown)
            if ratio > config.latency_ratio_max:
                crossed.append(
                    f"{shown}: ratio {ratio:.2f} > latency_ratio_max {config.latency_ratio_max}"
                )
    summary = f"{current.requests} requests"
    if crossed:
        return "failed", f"bake failed over {summary}: " + "; ".join(crossed)
    return "passed", f"{summary}; " + ("; ".join(said) or "no figure to compare")


def _num(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def verdict_record(
    config: BakeConfig,
    verdict: Literal["baking", "passed", "failed", "inconclusive"],
    current: WindowFigures,
    previous: WindowFigures | None,
    reason: str = "",
    remaining: float = 0.0,
) -> BakeVerdict:
    """The shared record (modelsync.verdicts) of a bake at this point."""
    return BakeVerdict(
        verdict=verdict,
        window_s=config.window,
        remaining_s=max(0.0, remaining),
        current=current,
        previous=previous,
        reason=reason[:2000],
    )
