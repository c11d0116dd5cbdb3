"""Cooperative cancellation: one token per pass, checked between chunks of work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from modelsync.errors import Cancelled

__all__ = ["CancelToken"]


class CancelToken:
    """Carries a stop event (shared by the daemon) and a pass deadline (monotonic seconds)."""

    def __init__(
        self,
        stop: threading.Event | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stop = stop if stop is not None else threading.Event()
        self._deadline = deadline
        self._clock = clock
        self._parent: CancelToken | None = None

    def child(self) -> CancelToken:
        """A token that fires with this one, and can also be fired on its own."""
        token = CancelToken(None, self._deadline, self._clock)
        token._parent = self
        return token

    def within(self, seconds: float) -> CancelToken:
        """A child that also fires ``seconds`` from now (one call's own time limit)."""
        token = self.child()
        end = self._clock() + seconds
        token._deadline = end if self._deadline is None else min(end, self._deadline)
        return token

    def caused(self, exc: BaseException | None) -> bool:
        """Whether ``exc`` is the Cancelled this token raised (not a failure of its own)."""
        return isinstance(exc, Cancelled) and self._stop.is_set()

    @property
    def stop_event(self) -> threading.Event:
        return self._stop

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None without one."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock())

    def cancelled(self) -> bool:
        if self._parent is not None and self._parent.cancelled():
            return True
        return self._stop.is_set() or (
            self._deadline is not None and self._clock() >= self._deadline
        )

    def check(self) -> None:
        """Raise Cancelled if a stop was requested or the deadline passed."""
        if self._parent is not None:
            self._parent.check()
        if self._stop.is_set():
            raise Cancelled("stop requested")
        if self._deadline is not None and self._clock() >= self._deadline:
            raise Cancelled("pass deadline exceeded (pass_timeout)")

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking at once on stop; raise Cancelled if it fired."""
        remaining = self.remaining()
        if remaining is not None:
            seconds = min(seconds, remaining)
        if self._parent is not None:
            # Wake on the parent's stop too: poll in short slices.
            end = self._clock() + seconds
            while not self.cancelled() and self._clock() < end:
                self._stop.wait(min(0.1, max(0.0, end - self._clock())))
        else:
            self._stop.wait(max(0.0, seconds))
        self.check()
