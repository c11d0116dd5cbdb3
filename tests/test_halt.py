"""Halt rules (modelsync/sync/policy/halt.py): when a canary stops fleet-wide."""

from __future__ import annotations

from modelsync.channel import Canary, LiveHalt, Pointer
from modelsync.sync.policy.halt import (
    CohortMedian,
    Evidence,
    FailedChecks,
    FailedHosts,
    first_halt,
)
from modelsync.verdicts import BakeVerdict, LiveChecks, SmokeVerdict, WindowFigures

CANARY = Canary(version=2, percent=20)


def _failed(*hosts: str) -> Evidence:
    return Evidence(dict.fromkeys(hosts, ""))


def _baked(err: float, prev_err: float, mean: float = 0.01, prev_mean: float = 0.01) -> LiveChecks:
    return LiveChecks(
        bake=BakeVerdict(
            verdict="passed",
            current=WindowFigures(requests=100, error_ratio=err, latency_mean_s=mean),
            previous=WindowFigures(requests=100, error_ratio=prev_err, latency_mean_s=prev_mean),
        )
    )


def test_failed_hosts_halts_at_halt_after() -> None:
    """The canary halts once ``halt_after`` distinct hosts failed it, not before."""
    pointer = Pointer(stable=1, canary=CANARY, halt_after=3)
    rule = FailedHosts()
    assert rule.check(pointer, _failed("a", "b")) is None
    assert rule.check(pointer, _failed("a", "b", "c")) == (
        "3 hosts rolled it back or refused it (halt_after 3)"
    )


def test_failed_hosts_default_halts_on_the_first_failure() -> None:
    """With the default ``halt_after = 1`` one failed host is enough; none is not."""
    pointer = Pointer(stable=1, canary=CANARY)
    assert FailedHosts().check(pointer, _failed("a")) is not None
    assert FailedHosts().check(pointer, _failed()) is None


def test_failed_checks_counts_failed_smoke_or_bake_verdicts() -> None:
    """Hosts whose live checks failed (smoke or bake) count; passed ones do not; the
    rule is off without ``halt_live.checks``."""
    live = {
        "a": LiveChecks(smoke=SmokeVerdict(verdict="failed", reason="outputs[0] = nan")),
        "b": LiveChecks(bake=BakeVerdict(verdict="failed")),
        "c": LiveChecks(bake=BakeVerdict(verdict="passed")),
    }
    on = Pointer(stable=1, canary=CANARY, halt_live=LiveHalt(checks=2))
    assert FailedChecks().check(on, Evidence({}, live)) == (
        "2 hosts failed its smoke or bake (halt_on_checks 2)"
    )
    assert (
        FailedChecks().check(
            on.model_copy(update={"halt_live": LiveHalt(checks=3)}), Evidence({}, live)
        )
        is None
    )
    assert FailedChecks().check(Pointer(stable=1, canary=CANARY), Evidence({}, live)) is None


def test_cohort_median_error_rise_and_latency_ratio() -> None:
    """The median over the cohort's bake figures halts, once enough hosts reported;
    one bad host among good ones does not move the median."""
    rules = LiveHalt(error_increase=0.02, latency_ratio=1.5, min_hosts=3)
    pointer = Pointer(stable=1, canary=CANARY, halt_live=rules)
    rule = CohortMedian()
    good = {"a": _baked(0.01, 0.01), "b": _baked(0.012, 0.01), "c": _baked(0.5, 0.01, 0.1)}
    assert rule.check(pointer, Evidence({}, good)) is None
    worse = {h: _baked(0.05, 0.01) for h in "abc"}
    assert rule.check(pointer, Evidence({}, dict(list(worse.items())[:2]))) is None  # 2 < 3
    why = rule.check(pointer, Evidence({}, worse))
    assert (
        why
        == "the cohort's median error-ratio rise 0.0400 over 3 hosts > halt_on_error_increase 0.02"
    )
    slow = {h: _baked(0.01, 0.01, 0.03, 0.01) for h in "abc"}
    assert "median latency ratio 3.00 over 3 hosts > halt_on_latency_ratio 1.5" in (
        rule.check(pointer, Evidence({}, slow)) or ""
    )


def test_first_halt_names_the_rule_and_no_canary_never_halts() -> None:
    """The first rule that halts names the halt; a pointer without canary never halts."""
    pointer = Pointer(stable=1, canary=CANARY, halt_live=LiveHalt(error_increase=0.01))
    live = {"a": _baked(0.3, 0.0)}
    assert first_halt(pointer, Evidence({}, live)) is not None
    assert first_halt(pointer, Evidence({}, live))[0] == "cohort_median"  # type: ignore[index]
    assert first_halt(pointer, Evidence({"a": ""}, live))[0] == "failed_hosts"  # type: ignore[index]
    assert first_halt(Pointer(stable=1), Evidence({"a": ""}, live)) is None


def test_pointer_without_live_rules_reads_as_before() -> None:
    """``halt_live`` is left out of the JSON when unset (older hosts read the pointer);
    set, it round-trips."""
    plain = Pointer(stable=1, canary=CANARY)
    assert b"halt_live" not in plain.to_bytes()
    live = plain.model_copy(update={"halt_live": LiveHalt(latency_ratio=2.0, min_hosts=3)})
    back = Pointer.parse(live.to_bytes(), "x")
    assert back.halt_live == LiveHalt(latency_ratio=2.0, min_hosts=3)
