"""When each model's next pass runs, on a bounded number of threads.

One thread per model stopped scaling at a few thousand models (seconds to stop,
minutes to reload, thousands of threads). Here each model is a ``ModelSlot`` (its
schedule and the counts the daemon reports, no thread); one scheduler thread hands
due slots to a fixed pool of pass runners. A slot never runs twice at once;
triggers (POST /sync, file events) move its next pass forward but never closer than
``MIN_PASS_GAP`` to the end of the previous one, so a flood of them coalesces.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import structlog

from modelsync.config import ModelConfig
from modelsync.outcome import Outcome, PassResult

__all__ = ["MIN_PASS_GAP", "ModelSlot", "Scheduler", "summary"]

# The least time between the end of one pass of a model and the start of the next.
MIN_PASS_GAP = 2.0
# The scheduler looks at the slots at least this often. Every change to a slot's due
# time wakes it (add, trigger, a pass's end, stop), so this is only a safety net; a
# one-second tick was a wake-up a second on a daemon that is idle for days.
_TICK = 60.0
# Next pass of a model whose pass ended without saying when (it raised).
_AFTER_CRASH = 2.0


class ModelSlot:
    """One model's schedule, and what the daemon reports of its passes."""

    def __init__(self, model: ModelConfig) -> None:
        self.model = model
        # Set when the model leaves the configuration or the daemon stops: its pass
        # in flight is abandoned.
        self.stop_event = threading.Event()
        self.failures = 0
        # Passes in a row that asked to be retried soon without failing (the server
        # has not confirmed yet, or is not reachable): they back off like failures.
        self.waiting = 0
        self.passes = 0
        self.last: PassResult | None = None
        self.stale = False
        # When the running pass started (monotonic), None between passes: a pass far
        # past its deadline is stuck, which /healthz reports.
        self.pass_started: float | None = None
        self.due = 0.0
        self.ended = -MIN_PASS_GAP
        self.running = False
        # A trigger that arrived while a pass ran: that pass may have listed the bucket
        # before the object the trigger announces, so one more pass follows it.
        self.rerun = False

    def record(self, result: PassResult, age: float | None) -> int:
        """Count a finished pass whose active revision is ``age`` seconds old (None:
        unknown); the failures in a row it ended (0: it ended none)."""
        ended = 0
        # A refused or rolled-back revision is the pass doing its work: only a pass
        # that could not do it (FAILED), or a rollback the server did not confirm,
        # counts toward max_failures and "recovered" (and is retried with backoff).
        if result.outcome is not Outcome.FAILED and not result.rollback_failed:
            ended, self.failures = self.failures, 0
        else:
            self.failures += 1
        self.waiting = self.waiting + 1 if result.retry_soon else 0
        max_age = self.model.max_age
        self.stale = bool(max_age is not None and age is not None and age > max_age)
        self.last = result
        self.passes += 1
        return ended


class Scheduler:
    """Runs ``run_pass(slot)`` for each due slot on ``threads`` runners; ``run_pass``
    returns the delay until that model's next pass."""

    def __init__(self, run_pass: Callable[[ModelSlot], float], threads: int) -> None:
        self._run_pass = run_pass
        self._cond = threading.Condition()
        self._slots: dict[str, ModelSlot] = {}
        self._stopping = False
        # Passes executing right now (queued ones are dropped at stop, not waited for).
        self._executing = 0
        # Daemon threads, unlike an executor's: a pass stuck in a command that ignores
        # the deadline must not hold the process at exit.
        self._queue: queue.SimpleQueue[ModelSlot | None] = queue.SimpleQueue()
        self._runners = [
            threading.Thread(target=self._runner, name=f"pass-{i}", daemon=True)
            for i in range(threads)
        ]
        self._thread: threading.Thread | None = None

    # -- the slots ---------------------------------------------------------------------

    def add(self, slot: ModelSlot) -> None:
        with self._cond:
            self._slots[slot.model.name] = slot
            self._cond.notify()

    def remove(self, name: str) -> ModelSlot | None:
        """Forget ``name``; its pass in flight, if any, is told to stop."""
        with self._cond:
            slot = self._slots.pop(name, None)
        if slot is not None:
            slot.stop_event.set()
        return slot

    def get(self, name: str) -> ModelSlot | None:
        with self._cond:
            return self._slots.get(name)

    def slots(self) -> list[ModelSlot]:
        with self._cond:
            return list(self._slots.values())

    def trigger(self, name: str) -> None:
        """Run ``name``'s next pass as soon as the minimum gap allows."""
        with self._cond:
            slot = self._slots.get(name)
            if slot is not None:
                slot.rerun = slot.running
                slot.due = min(slot.due, max(time.monotonic(), slot.ended + MIN_PASS_GAP))
                self._cond.notify()

    # -- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        """Start (or, after it ended, restart) the scheduler thread."""
        for runner in self._runners:
            if not runner.is_alive() and runner.ident is None:
                runner.start()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                waits = [_TICK]
                for slot in self._slots.values():
                    if slot.running:
                        continue
                    if slot.due <= now:
                        slot.running = True
                        self._queue.put(slot)
                    else:
                        waits.append(slot.due - now)
                self._cond.wait(min(waits))

    def _runner(self) -> None:
        while (slot := self._queue.get()) is not None:
            if self._stopping:
                continue
            try:
                self._run(slot)
            except BaseException:  # even SystemExit: this runner serves every model
                structlog.get_logger().bind(model=slot.model.name).exception(
                    "a pass raised past its handlers; the model stays scheduled"
                )

    def _run(self, slot: ModelSlot) -> None:
        delay = _AFTER_CRASH
        with self._cond:
            self._executing += 1
        try:
            delay = self._run_pass(slot)
        finally:
            with self._cond:
                self._executing -= 1
                slot.running = False
                slot.ended = time.monotonic()
                slot.due = slot.ended + (MIN_PASS_GAP if slot.rerun else max(delay, MIN_PASS_GAP))
                slot.rerun = False
                self._cond.notify()

    def stop(self, grace: float) -> None:
        """Stop scheduling, tell every pass in flight to stop, wait up to ``grace``."""
        with self._cond:
            self._stopping = True
            slots = list(self._slots.values())
            self._cond.notify()
        for slot in slots:
            slot.stop_event.set()
        deadline = time.monotonic() + grace
        if self._thread is not None:
            self._thread.join(grace)
        for _ in self._runners:
            self._queue.put(None)
        with self._cond:
            while self._executing and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))


def summary(slots: list[ModelSlot], shown: int = 20) -> str:
    """Each model's active version and last outcome, by name, for systemd's STATUS=."""
    ordered = sorted(slots, key=lambda s: s.model.name)
    text = "; ".join(
        f"{s.model.name}: v{s.last.active if s.last and s.last.active else '-'}"
        f" {s.last.outcome.value if s.last else 'pending'}"
        for s in ordered[:shown]
    )
    return text + (f"; and {len(ordered) - shown} more" if len(ordered) > shown else "")
