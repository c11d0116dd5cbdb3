"""When a canary stops fleet-wide: rules over what the cohort's hosts reported.

Every sidecar (and ``release status``) applies the same rules to the same evidence read
from the bucket, so the fleet halts together without a controller. A rule is one class
with ``check``, answering why it halts the canary, or None; the pointer carries the
rules' parameters (``halt_after``; ``halt_live`` for the rules on live checks). The
first rule that halts names the halt (``ChannelInfo.halt_rule``, ``release status``).

- ``failed_hosts``: ``halt_after`` hosts rolled the canary back or refused it (their
  failure markers: a load, smoke or bake failure alike);
- ``failed_checks``: ``halt_live.checks`` hosts report a failed smoke or bake verdict
  (modelsync.verdicts) for it;
- ``cohort_median``: once ``halt_live.min_hosts`` hosts report bake figures, the
  median of their error-ratio rises (new minus previous) exceeds
  ``halt_live.error_increase``, or the median of their latency ratios exceeds
  ``halt_live.latency_ratio``: a regression each host's own bake may let through is
  caught on the cohort as a whole.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modelsync.channel import Pointer
from modelsync.verdicts import LiveChecks, WindowFigures

__all__ = [
    "RULES",
    "CohortMedian",
    "Evidence",
    "FailedChecks",
    "FailedHosts",
    "HaltRule",
    "cohort_figures",
    "first_halt",
]


@dataclass(frozen=True)
class Evidence:
    """What the hosts reported about one canary."""

    # Hosts with a failure marker for it -> what the marker says ("" when not read).
    failed: Mapping[str, str] = field(default_factory=dict)
    # Hosts whose report on it carries live checks -> those checks.
    live: Mapping[str, LiveChecks] = field(default_factory=dict)


class HaltRule(Protocol):
    name: str

    def check(self, pointer: Pointer, evidence: Evidence) -> str | None:
        """Why the pointer's canary stops, given the evidence; None when it goes on."""
        ...


class FailedHosts:
    """Halt once ``halt_after`` hosts reported the canary rolled back or refused."""

    name = "failed_hosts"

    def check(self, pointer: Pointer, evidence: Evidence) -> str | None:
        failed = len(evidence.failed)
        if failed < pointer.halt_after:
            return None
        return f"{failed} hosts rolled it back or refused it (halt_after {pointer.halt_after})"


class FailedChecks:
    """Halt once ``halt_live.checks`` hosts report a failed smoke or bake verdict."""

    name = "failed_checks"

    def check(self, pointer: Pointer, evidence: Evidence) -> str | None:
        limit = pointer.halt_live.checks if pointer.halt_live else None
        if limit is None:
            return None
        failed = sorted(
            host
            for host, live in evidence.live.items()
            if (live.smoke is not None and live.smoke.verdict == "failed")
            or (live.bake is not None and live.bake.verdict == "failed")
        )
        if len(failed) < limit:
            return None
        return f"{len(failed)} hosts failed its smoke or bake (halt_on_checks {limit})"


def _latency(figures: WindowFigures, use_mean: bool) -> float | None:
    return figures.latency_mean_s if use_mean else figures.latency_p99_s


def cohort_figures(live: Mapping[str, LiveChecks]) -> tuple[list[float], list[float]]:
    """Per reporting host with bake figures: the error-ratio rise over the previous
    revision, and the latency ratio (the mean where both windows have it, else p99)."""
    rises, ratios = [], []
    for checks in live.values():
        bake = checks.bake
        if bake is None or bake.current.requests == 0:
            continue
        previous = bake.previous or WindowFigures()
        if bake.current.error_ratio is not None:
            rises.append(bake.current.error_ratio - (previous.error_ratio or 0.0))
        # The mean, as the bake compares by default (a short window's p99 is noisy).
        use_mean = bake.current.latency_mean_s is not None and previous.latency_mean_s is not None
        now, before = _latency(bake.current, use_mean), _latency(previous, use_mean)
        if now is not None and before:
            ratios.append(now / before)
    return rises, ratios


class CohortMedian:
    """Halt when the cohort's median error-ratio rise or latency ratio crosses the
    pointer's threshold, over at least ``halt_live.min_hosts`` hosts' figures."""

    name = "cohort_median"

    def check(self, pointer: Pointer, evidence: Evidence) -> str | None:
        rules = pointer.halt_live
        if rules is None or (rules.error_increase is None and rules.latency_ratio is None):
            return None
        rises, ratios = cohort_figures(evidence.live)
        if rules.error_increase is not None and len(rises) >= rules.min_hosts:
            median = statistics.median(rises)
            if median > rules.error_increase:
                return (
                    f"the cohort's median error-ratio rise {median:.4f} over {len(rises)} hosts "
                    f"> halt_on_error_increase {rules.error_increase}"
                )
        if rules.latency_ratio is not None and len(ratios) >= rules.min_hosts:
            median = statistics.median(ratios)
            if median > rules.latency_ratio:
                return (
                    f"the cohort's median latency ratio {median:.2f} over {len(ratios)} hosts "
                    f"> halt_on_latency_ratio {rules.latency_ratio}"
                )
        return None


RULES: Sequence[HaltRule] = (FailedHosts(), FailedChecks(), CohortMedian())


def first_halt(
    pointer: Pointer, evidence: Evidence, rules: Sequence[HaltRule] = RULES
) -> tuple[str, str] | None:
    """(rule name, why) of the first rule that halts the pointer's canary; None when
    none does (or there is no canary)."""
    if pointer.canary is None:
        return None
    for rule in rules:
        why = rule.check(pointer, evidence)
        if why is not None:
            return rule.name, why
    return None
