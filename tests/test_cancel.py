from __future__ import annotations

import threading
import time

import pytest

from modelsync.cancel import CancelToken
from modelsync.errors import Cancelled


def test_deadline_and_stop() -> None:
    """check() raises after the deadline or a stop; remaining() counts down."""
    now = [100.0]
    token = CancelToken(deadline=110.0, clock=lambda: now[0])
    assert token.remaining() == 10.0
    token.check()
    now[0] = 111.0
    with pytest.raises(Cancelled, match="deadline"):
        token.check()
    stop = threading.Event()
    stopped = CancelToken(stop)
    stop.set()
    with pytest.raises(Cancelled, match="stop"):
        stopped.check()


def test_child_fires_with_parent_and_alone() -> None:
    """A child token follows its parent but can be stopped on its own."""
    parent = CancelToken()
    child = parent.child()
    child.stop_event.set()
    assert child.cancelled() and not parent.cancelled()
    other = parent.child()
    parent.stop_event.set()
    assert other.cancelled()


def test_wait_wakes_on_stop() -> None:
    """wait() returns at once when the stop event is set from another thread."""
    token = CancelToken()
    threading.Timer(0.1, token.stop_event.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        token.wait(30)
    assert time.monotonic() - started < 5
