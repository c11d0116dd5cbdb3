"""The bake's verdict from two windows' figures (modelsync.bakejudge)."""

from __future__ import annotations

from modelsync.bakejudge import BakeConfig, judge
from modelsync.verdicts import WindowFigures

CONFIG = BakeConfig()


def _f(
    requests: int, err: float | None, mean: float | None, p99: float | None = None
) -> WindowFigures:
    return WindowFigures(requests=requests, error_ratio=err, latency_mean_s=mean, latency_p99_s=p99)


def test_as_good_as_before_passes_with_the_figures() -> None:
    """Figures like the previous revision's pass; the reason gives them."""
    verdict, reason = judge(CONFIG, _f(100, 0.01, 0.010), _f(100, 0.01, 0.010))
    assert verdict == "passed" and "error ratio 0.0100 (previous 0.0100)" in reason


def test_error_ratio_rise_fails() -> None:
    """A rise over error_ratio_max fails, naming both figures and the ceiling."""
    verdict, reason = judge(CONFIG, _f(100, 0.2, 0.010), _f(100, 0.01, 0.010))
    assert verdict == "failed"
    assert "error ratio 0.2000 (previous 0.0100): rise 0.1900 > error_ratio_max 0.05" in reason


def test_latency_ratio_on_the_named_figure_else_mean() -> None:
    """``latency = "p99"`` compares p99 where both windows have it, else the mean; the
    default compares the mean."""
    assert judge(CONFIG, _f(100, None, 0.010, 0.09), _f(100, None, 0.010, 0.03))[0] == "passed"
    p99 = BakeConfig(latency="p99")
    verdict, reason = judge(p99, _f(100, None, 0.010, 0.09), _f(100, None, 0.010, 0.03))
    assert verdict == "failed" and "p99 latency 90.0 ms (previous 30.0 ms): ratio 3.00" in reason
    verdict, reason = judge(CONFIG, _f(100, 0.0, 0.030), _f(100, 0.0, 0.010))
    assert verdict == "failed" and "mean latency 30.0 ms" in reason


def test_too_few_requests_and_unusable_previous() -> None:
    """Below min_requests: inconclusive (or failed, if configured); a previous window
    below it is not compared (the error ratio against 0)."""
    assert judge(CONFIG, _f(5, 1.0, 9.0), None)[0] == "inconclusive"
    strict = BakeConfig(inconclusive="fail")
    assert judge(strict, _f(5, 0.0, 0.01), None)[0] == "failed"
    verdict, _ = judge(CONFIG, _f(100, 0.0, 0.5), _f(3, 0.0, 0.001))
    assert verdict == "passed"  # latency not compared with 3 requests
    assert judge(CONFIG, _f(100, 0.06, None), None)[0] == "failed"
