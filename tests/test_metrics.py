from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from modelsync.metrics import Metrics
from modelsync.sync import Outcome, PassResult
from modelsync.transfer import TransferStats


def test_record_and_forget() -> None:
    """A pass sets gauges and counters; revision age is computed at scrape time."""
    now = [1000.0]
    registry = CollectorRegistry()
    metrics = Metrics(registry, clock=lambda: now[0])
    result = PassResult(
        "m", Outcome.ACTIVATED, 7, stats=TransferStats(bytes_fetched=42), duration=0.3
    )
    metrics.record(result, created=900.0, failures=0, stale=False)
    now[0] = 1100.0
    text = generate_latest(registry).decode()
    assert 'modelsync_active_version{model="m"} 7.0' in text
    assert 'modelsync_sync_total{model="m",outcome="activated"} 1.0' in text
    assert 'modelsync_download_bytes_total{model="m"} 42.0' in text
    assert 'modelsync_revision_age_seconds{model="m"} 200.0' in text
    metrics.forget("m")
    text = generate_latest(registry).decode()
    assert 'modelsync_revision_age_seconds{model="m"}' not in text
    assert 'modelsync_active_version{model="m"}' not in text


def test_channel_gauges_follow_the_pointer() -> None:
    """Channel, stable and canary as labels; a changed pointer replaces the old series."""
    from modelsync.state import ChannelInfo

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    info = ChannelInfo("prod", 4, 5, 20.0, in_cohort=True, halted=False, target=5)
    metrics.record(PassResult("m", Outcome.ACTIVATED, 5, channel=info), None, 0, False)
    text = generate_latest(registry).decode()
    assert 'modelsync_channel_info{canary="5",channel="prod",model="m",stable="4"} 1.0' in text
    assert 'modelsync_channel_in_cohort{model="m"} 1.0' in text
    assert 'modelsync_channel_halted{model="m"} 0.0' in text
    halted = ChannelInfo("prod", 4, 5, 20.0, in_cohort=True, halted=True, target=4)
    metrics.record(PassResult("m", Outcome.ACTIVATED, 4, channel=halted), None, 0, False)
    promoted = ChannelInfo("prod", 5, None, None, in_cohort=False, halted=False, target=5)
    metrics.record(PassResult("m", Outcome.UNCHANGED, 5, channel=promoted), None, 0, False)
    text = generate_latest(registry).decode()
    assert 'stable="4"' not in text
    assert 'modelsync_channel_info{canary="",channel="prod",model="m",stable="5"} 1.0' in text
    metrics.forget("m")
    assert "modelsync_channel_in_cohort{" not in generate_latest(registry).decode()


def test_a_failed_smoke_counts_as_a_live_check_failure() -> None:
    """A pass whose candidate failed its smoke requests increments the smoke counter;
    a pass whose smoke passed does not."""
    from modelsync.verdicts import LiveChecks, SmokeVerdict

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    failed = LiveChecks(smoke=SmokeVerdict(verdict="failed", requests=1, reason="x"))
    passed = LiveChecks(smoke=SmokeVerdict(verdict="passed", requests=1))
    metrics.record(PassResult("m", Outcome.ROLLED_BACK, 1, candidate=2, live=failed), 1.0, 0, False)
    metrics.record(PassResult("m", Outcome.ACTIVATED, 3, candidate=3, live=passed), 1.0, 0, False)
    text = generate_latest(registry).decode()
    assert 'modelsync_live_check_failures_total{check="smoke",model="m"} 1.0' in text


def test_a_revision_passed_over_is_exported_until_a_pass_brings_it_in() -> None:
    """A newest revision that could not be fetched is the deferred gauge's value while an
    older one stands in; the pass that brings it in sets the gauge back to 0, and the
    model's series leaves with the model."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    deferred = PassResult("m", Outcome.ACTIVATED, 1, deferred={3: "403", 2: "403"})
    metrics.record(deferred, None, 1, False)
    text = generate_latest(registry).decode()
    assert 'modelsync_deferred_version{model="m"} 3.0' in text
    assert 'modelsync_last_success_timestamp_seconds{model="m"}' not in text
    metrics.record(PassResult("m", Outcome.ACTIVATED, 3), None, 0, False)
    assert 'modelsync_deferred_version{model="m"} 0.0' in generate_latest(registry).decode()
    metrics.forget("m")
    assert 'modelsync_deferred_version{model="m"}' not in generate_latest(registry).decode()
