"""Thousands of models cost a few threads, and stop and reload stay prompt (issue 11
finding 19): a real `modelsync run` with 3,000 models."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from modelsync.config import ModelConfig
from modelsync.schedule import ModelSlot, Scheduler
from tests.daemonproc import DaemonProcess
from tests.helpers import thread_wakeups


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_three_thousand_models(tmp_path: Path, procs: list[DaemonProcess]) -> None:
    """All 3,000 get their first pass; the daemon holds a bounded number of threads;
    SIGHUP reloads within seconds; SIGTERM stops it in under 5 s."""
    models = []
    for index in range(3000):
        source = tmp_path / "bucket" / f"m{index}"
        source.mkdir(parents=True)
        models.append(f'[[models]]\nname = "m{index}"\nsource = "file://{source}"\n')
    config = tmp_path / "c.toml"
    config.write_text(f'store = "{tmp_path / "data" / "models"}"\n' + "".join(models))
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_for(lambda e: e.get("event") == "first pass done; ready", timeout=240)
    assert _threads(daemon.pid) < 60
    mark = len(daemon.events())
    started = time.monotonic()
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(lambda e: e.get("event") == "config reloaded", timeout=60, after=mark)
    assert time.monotonic() - started < 10
    assert _threads(daemon.pid) < 60
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    assert time.monotonic() - started < 5


def _first_pass_started(run_pass: Callable[[ModelSlot], float], started: list[float]) -> Scheduler:
    """A running scheduler of one model "m", once ``run_pass`` has recorded its first start."""
    scheduler = Scheduler(run_pass, threads=2)
    scheduler.add(ModelSlot(ModelConfig(name="m", source="s3://b/m")))
    scheduler.start()
    deadline = time.monotonic() + 5
    while not started and time.monotonic() < deadline:
        time.sleep(0.01)
    return scheduler


def test_a_trigger_during_a_pass_yields_one_pass_after_it() -> None:
    """Triggers arriving while a model's pass runs (that pass may have listed the
    bucket before the object they announce) give exactly one more pass, not none and
    not one each; with no trigger the next pass waits for its interval."""
    import threading

    from modelsync.schedule import MIN_PASS_GAP

    started: list[float] = []
    release = threading.Event()

    def run_pass(_slot: ModelSlot) -> float:
        started.append(time.monotonic())
        if len(started) == 1:
            release.wait(10)
        return 3600.0

    scheduler = _first_pass_started(run_pass, started)
    try:
        for _ in range(50):
            scheduler.trigger("m")
        release.set()
        time.sleep(MIN_PASS_GAP + 2.5)
        assert len(started) == 2
        assert started[1] - started[0] >= MIN_PASS_GAP
    finally:
        scheduler.stop(2)


def test_an_idle_scheduler_sleeps_until_a_pass_is_due_or_triggered() -> None:
    """Between passes the scheduler thread does not wake (it turned every second, on
    a daemon idle for days: CPU on every host of a fleet); a trigger still starts the
    next pass at once, as the end of a pass and a new slot do."""
    from modelsync.schedule import MIN_PASS_GAP

    started: list[float] = []

    def run_pass(_slot: ModelSlot) -> float:
        started.append(time.monotonic())
        return 3600.0

    scheduler = _first_pass_started(run_pass, started)
    try:
        time.sleep(0.3)  # the pass's end woke it once; now it waits for the next
        before = thread_wakeups("scheduler")
        time.sleep(2.5)
        assert thread_wakeups("scheduler") == before
        time.sleep(max(0.0, MIN_PASS_GAP - 2.8))
        triggered = time.monotonic()
        scheduler.trigger("m")
        while len(started) < 2 and time.monotonic() < triggered + 5:
            time.sleep(0.01)
        assert len(started) == 2 and started[1] - triggered < 0.5
    finally:
        scheduler.stop(2)


def test_a_slot_counts_failures_waits_and_staleness_and_says_what_a_success_ended() -> None:
    """Only a pass that could not do its work (FAILED) or a rollback the server did not
    confirm counts as a failure; the next success reports how many it ended."""
    from modelsync.config import ModelConfig
    from modelsync.outcome import Outcome, PassResult
    from modelsync.schedule import ModelSlot

    slot = ModelSlot(ModelConfig(name="m", source="s3://b/m", max_age=3600.0))
    assert slot.record(PassResult("m", Outcome.FAILED, None), None) == 0
    assert slot.record(PassResult("m", Outcome.FAILED, None, retry_soon=True), None) == 0
    assert (slot.failures, slot.waiting, slot.passes) == (2, 1, 2)
    assert slot.record(PassResult("m", Outcome.ROLLED_BACK, 1), 7200.0) == 2
    assert (slot.failures, slot.waiting, slot.stale) == (0, 0, True)
    assert slot.record(PassResult("m", Outcome.UNCHANGED, 1, rollback_failed=True), 60.0) == 0
    assert (slot.failures, slot.stale, slot.passes) == (1, False, 4)


def test_the_summary_lists_models_by_name_and_counts_the_rest() -> None:
    """systemd's STATUS= line: each model's active version and last outcome."""
    from modelsync.config import ModelConfig
    from modelsync.outcome import Outcome, PassResult
    from modelsync.schedule import ModelSlot, summary

    slots = [ModelSlot(ModelConfig(name=f"m{i}", source="s3://b/m")) for i in (2, 1, 3)]
    slots[1].record(PassResult("m1", Outcome.ACTIVATED, 4), None)
    assert summary(slots) == "m1: v4 activated; m2: v- pending; m3: v- pending"
    assert summary(slots, shown=1) == "m1: v4 activated; and 2 more"
