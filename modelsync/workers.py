"""A fixed number of threads working through one list of jobs, their results finished
on the caller's thread, the first failure stopping the rest (transfer.py's files)."""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from typing import Generic, NoReturn, TypeVar

from modelsync.cancel import CancelToken

__all__ = ["Workers"]

J = TypeVar("J")
R = TypeVar("R")


class Workers(Generic[J, R]):
    """Threads that each loop over one shared list of jobs, handing results back on a
    queue, instead of a future (and its wake-ups) per job: with the other per-file
    savings, 1,000 small files went from 237,870 futex calls to 183,369 (transport.md).
    The first failure sets ``local``'s stop event: the other jobs end there."""

    def __init__(
        self,
        run: Callable[[J], R],
        jobs: list[J],
        threads: int,
        local: CancelToken,
    ) -> None:
        self._run = run
        self._todo = collections.deque(jobs)
        self._count = len(jobs)
        self._local = local
        self._results: queue.SimpleQueue[R | BaseException] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"fetch-{i}", daemon=True)
            for i in range(min(threads, len(jobs)))
        ]

    def _loop(self) -> None:
        # No check of the token here: ``run`` checks it first (each job must), and its
        # Cancelled is the result that tells ``drain`` to stop waiting.
        while True:
            try:
                job = self._todo.popleft()
            except IndexError:
                return
            try:
                self._results.put(self._run(job))
            except BaseException as exc:
                self._local.stop_event.set()
                self._results.put(exc)
                return

    def drain(self, finish: Callable[[R], None]) -> None:
        """``finish`` each result on this thread; on the first failure stop the others,
        keep what did arrive complete, and raise that failure."""
        for thread in self._threads:
            thread.start()
        try:
            for _ in range(self._count):
                result = self._results.get()
                if isinstance(result, BaseException):
                    self._fail(result, finish)
                finish(result)
        except BaseException:
            self._local.stop_event.set()
            raise
        finally:
            for thread in self._threads:
                thread.join()

    def _fail(self, first: BaseException, finish: Callable[[R], None]) -> NoReturn:
        self._local.stop_event.set()
        for thread in self._threads:
            thread.join()
        errors = [first]
        while not self._results.empty():
            result = self._results.get()
            if isinstance(result, BaseException):
                errors.append(result)
            else:
                # What did arrive complete is kept complete for the next pass.
                finish(result)
        # Report the first real failure, not the Cancelled it caused in the others.
        raise next((e for e in errors if not self._local.caused(e)), first)
