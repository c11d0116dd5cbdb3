"""Workers: every job run once on at most N threads, results finished on the caller's
thread; the first failure stops the rest, keeps what completed, and is what is raised
(not the Cancelled it caused in the others)."""

from __future__ import annotations

import threading
import time

import pytest

from modelsync.cancel import CancelToken
from modelsync.errors import Cancelled
from modelsync.workers import Workers


def test_every_job_runs_once_on_at_most_n_threads_and_finishes_here() -> None:
    seen: list[str] = []
    finished: list[tuple[int, str]] = []
    lock = threading.Lock()

    def run(job: int) -> int:
        with lock:
            seen.append(threading.current_thread().name)
        return job * 2

    Workers(run, list(range(50)), 4, CancelToken(threading.Event())).drain(
        lambda r: finished.append((r, threading.current_thread().name))
    )
    assert sorted(r for r, _ in finished) == [j * 2 for j in range(50)]
    assert {name for _, name in finished} == {threading.current_thread().name}
    assert len(set(seen)) <= 4


def test_the_first_failure_stops_the_rest_and_keeps_what_completed() -> None:
    local = CancelToken(threading.Event())
    finished: list[int] = []

    def run(job: int) -> int:
        local.check()  # as transfer.py's jobs do: a stopped pass ends them here
        if job == 3:
            raise OSError("disk on fire")
        if job > 3:
            time.sleep(0.05)
        return job

    with pytest.raises(OSError, match="disk on fire"):
        Workers(run, list(range(40)), 2, local).drain(finished.append)
    assert local.stop_event.is_set()
    assert {0, 1, 2} <= set(finished)
    assert len(finished) < 39  # the stop reached the jobs still to run


def test_a_cancelled_caused_by_the_stop_is_not_what_is_raised() -> None:
    local = CancelToken(threading.Event())
    started = threading.Event()
    cancelled: list[Cancelled] = []

    def run(job: int) -> int:
        if job == 0:
            started.wait(5)
            raise ValueError("the real failure")
        started.set()
        local.stop_event.wait(5)
        try:
            local.check()
        except Cancelled as exc:
            cancelled.append(exc)
            raise
        return job

    with pytest.raises(ValueError, match="the real failure"):
        Workers(run, [1, 0], 2, local).drain(lambda _r: None)
    assert len(cancelled) == 1  # the other job ended in Cancelled, which was not raised
