"""One scheduled pass of one model, and what the daemon books after it.

The scheduler (schedule.py) calls ``PassRunner.run`` on one of its runner threads:
the pass itself (``Syncer.sync``, which never raises for a sync failure), then the
bookkeeping around it — the slot's counts, the metrics, the stale warning, the
daemon's "pass" and "fatal" events — and the delay until the model's next pass:
the interval with jitter, or a backoff after failures.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import structlog

from modelsync.cancel import CancelToken
from modelsync.config import Config
from modelsync.events.push import Push
from modelsync.metrics import Metrics
from modelsync.outcome import Outcome
from modelsync.schedule import ModelSlot
from modelsync.sync import Syncer

__all__ = ["PassRunner"]

# A failed pass is retried after 2 s, 4 s, 8 s ... up to the interval.
_BACKOFF_START = 2.0


class PassRunner:
    """Runs a slot's pass and books it. ``config`` gives the running configuration
    (a reload replaces it between passes); ``on_pass`` is told the model's name after
    every booked pass, ``on_fatal`` the reason when a model reached max_failures."""

    def __init__(
        self,
        syncer: Syncer,
        metrics: Metrics,
        push: Push,
        config: Callable[[], Config],
        *,
        on_pass: Callable[[str], None],
        on_fatal: Callable[[str], None],
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._syncer = syncer
        self._metrics = metrics
        self._push = push
        self._config = config
        self._on_pass = on_pass
        self._on_fatal = on_fatal
        self._wall = wall
        self._rng = rng or random.Random()  # noqa: S311 - schedule jitter, not secrets
        self._log = structlog.get_logger()

    def next_delay(self, failures: int) -> float:
        """Seconds until the next pass after ``failures`` failed (or waiting) passes
        in a row: the interval with jitter, or a jittered backoff up to the interval."""
        config = self._config()
        interval = config.interval
        if failures:
            base: float = min(interval, _BACKOFF_START * 2.0 ** (failures - 1))
            return base * self._rng.uniform(0.8, 1.2)
        return interval * (1 + self._rng.uniform(-config.jitter, config.jitter))

    def run(self, slot: ModelSlot) -> float:
        """One pass of ``slot``'s model and its bookkeeping; the delay until the next."""
        slot.pass_started = time.monotonic()
        earlier = slot.last
        self._push.pass_started(slot.model.name)
        try:
            self._one(slot)
        except Exception:
            # The pass itself never raises (Syncer.sync); this is the bookkeeping
            # around it. The model goes on, the failure counted.
            slot.failures += 1
            self._log.bind(model=slot.model.name).exception(
                "model pass bookkeeping failed; counted as a failed pass"
            )
        finally:
            slot.pass_started = None
        delay = self.next_delay(max(slot.failures, slot.waiting))
        # A bake's window ends before the next pass would come: its verdict is not late.
        # (Only this pass's result says so; an earlier one's wish is spent.)
        wake = slot.last.wake_in if slot.last is not None and slot.last is not earlier else None
        return min(delay, wake) if wake is not None else delay

    def _one(self, slot: ModelSlot) -> None:
        model, config = slot.model, self._config()
        cancel = CancelToken(slot.stop_event, time.monotonic() + config.pass_timeout)
        result = self._syncer.sync(model, cancel)
        if slot.stop_event.is_set() and result.outcome is Outcome.FAILED:
            return  # abandoned on purpose: not a failure of the model
        log = structlog.get_logger().bind(model=model.name, version=result.active)
        ms = self._syncer.store.model(model.name, model.layout)
        manifest = ms.manifest_of(result.active) if result.active is not None else None
        created = manifest.created.timestamp() if manifest else None
        age = None if created is None else self._wall() - created
        recovered = slot.record(result, age)
        if recovered:
            log.info("recovered", after_failures=recovered)
        if slot.stale:
            log.warning("active revision is stale", age_s=round(age or 0), max_age_s=model.max_age)
        self._metrics.record(
            result, created, slot.failures, slot.stale, rollback_failed=result.rollback_failed
        )
        self._on_pass(model.name)
        if config.max_failures is not None and slot.failures >= config.max_failures:
            self._on_fatal(
                f"model {model.name} failed {slot.failures} passes in a row "
                f"(max_failures); last error: {result.error}"
            )
