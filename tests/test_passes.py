"""PassRunner: one scheduled pass of one model against a real file:// bucket and store,
and what is booked after it (the slot's counts, the metrics, the daemon's events, the
delay until the next pass)."""

from __future__ import annotations

import random
from pathlib import Path

from prometheus_client import CollectorRegistry

from modelsync.config import Config, ModelConfig
from modelsync.events.push import Push
from modelsync.metrics import Metrics
from modelsync.passes import PassRunner
from modelsync.schedule import ModelSlot
from modelsync.sync import Syncer
from modelsync.volume import Store
from tests.helpers import model_files, put_revision


class Booked:
    """The runner's two callbacks, recorded."""

    def __init__(self) -> None:
        self.passes: list[str] = []
        self.fatal: list[str] = []


def _runner(
    tmp_path: Path, config: Config, booked: Booked, registry: CollectorRegistry
) -> PassRunner:
    metrics = Metrics(registry)
    push = Push(registry, lambda _models: None, lambda _name: None)
    syncer = Syncer(Store(config.store, config.state_path))
    return PassRunner(
        syncer,
        metrics,
        push,
        lambda: config,
        on_pass=booked.passes.append,
        on_fatal=booked.fatal.append,
        rng=random.Random(7),
    )


def _config(tmp_path: Path, source: str, **extra: object) -> Config:
    return Config(
        store=tmp_path / "store",
        interval=600,
        models=(ModelConfig(name="ranker", source=source),),
        **extra,  # type: ignore[arg-type]
    )


def test_a_pass_that_activates_is_booked_and_the_next_comes_after_the_interval(
    tmp_path: Path, bucket: Path
) -> None:
    """Revision 1 is served after the pass, the slot counts one pass and no failure,
    the activation is in the metrics, the daemon is told, and the next pass is one
    interval away, within the jitter."""
    put_revision(bucket, 1, model_files(1))
    config = _config(tmp_path, f"file://{bucket}")
    booked, registry = Booked(), CollectorRegistry()
    runner = _runner(tmp_path, config, booked, registry)
    slot = ModelSlot(config.models[0])

    delay = runner.run(slot)

    assert (tmp_path / "store" / "ranker" / "current").readlink() == Path("1")
    assert (slot.passes, slot.failures, slot.pass_started) == (1, 0, None)
    assert booked.passes == ["ranker"] and booked.fatal == []
    activated = registry.get_sample_value(
        "modelsync_sync_total", {"model": "ranker", "outcome": "activated"}
    )
    assert activated == 1
    assert 600 * (1 - config.jitter) <= delay <= 600 * (1 + config.jitter)


def test_failed_passes_back_off_and_max_failures_is_fatal(tmp_path: Path) -> None:
    """A source that does not exist fails every pass: the delays grow 2 s, 4 s, 8 s
    (each within 20 %), and the third failure in a row tells the daemon, naming the
    model and the last error."""
    config = _config(tmp_path, f"file://{tmp_path / 'missing'}", max_failures=3)
    booked = Booked()
    runner = _runner(tmp_path, config, booked, CollectorRegistry())
    slot = ModelSlot(config.models[0])

    delays = [runner.run(slot) for _ in range(3)]

    assert slot.failures == 3
    for delay, base in zip(delays, (2.0, 4.0, 8.0), strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert booked.passes == ["ranker"] * 3
    assert len(booked.fatal) == 1
    assert booked.fatal[0].startswith("model ranker failed 3 passes in a row (max_failures)")
    assert not (tmp_path / "store" / "ranker" / "current").exists()


def test_backoff_never_exceeds_the_interval(tmp_path: Path) -> None:
    """From the tenth failure in a row (2 s x 2^9 > 600 s) the wait is the interval, with
    the backoff's 20 % jitter, not 2^n s."""
    config = _config(tmp_path, f"file://{tmp_path / 'missing'}")
    runner = _runner(tmp_path, config, Booked(), CollectorRegistry())
    for failures in (10, 20, 60):
        assert 600 * 0.8 <= runner.next_delay(failures) <= 600 * 1.2


def test_a_pass_abandoned_by_its_stop_event_is_not_booked(tmp_path: Path) -> None:
    """A model removed (its stop event set) whose pass fails: not a failure of the
    model, so nothing is counted and the daemon is not told."""
    config = _config(tmp_path, f"file://{tmp_path / 'missing'}", max_failures=1)
    booked = Booked()
    runner = _runner(tmp_path, config, booked, CollectorRegistry())
    slot = ModelSlot(config.models[0])
    slot.stop_event.set()

    runner.run(slot)

    assert (slot.passes, slot.failures) == (0, 0)
    assert booked.passes == [] and booked.fatal == []
