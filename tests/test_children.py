"""Child processes end at min(their timeout, the pass deadline), the whole group stopped."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.children import STOP_GRACE, ChildTimedOut, run_child
from modelsync.errors import Cancelled

# Ignores SIGTERM, starts a grandchild that writes its PID, then sleeps.
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "open(sys.argv[1], 'w').write(str(g.pid))\n"
    "time.sleep(600)\n"
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie of a parent that died is reaped by init shortly.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.parametrize("how", ["deadline", "stop", "timeout"])
def test_a_stubborn_child_and_its_own_children_are_stopped(tmp_path: Path, how: str) -> None:
    """A child ignoring SIGTERM, with a grandchild: SIGKILLed after STOP_GRACE when the
    pass deadline passes, a stop is requested, or its own timeout runs out."""
    pidfile = tmp_path / "grandchild"
    cancel = CancelToken(deadline=time.monotonic() + 2) if how == "deadline" else CancelToken()
    if how == "stop":
        threading.Timer(2, cancel.stop_event.set).start()
    expected = ChildTimedOut if how == "timeout" else Cancelled
    started = time.monotonic()
    with pytest.raises(expected):
        run_child(
            [sys.executable, "-c", STUBBORN, str(pidfile)],
            dict(os.environ),
            2 if how == "timeout" else 600,
            cancel,
        )
    assert time.monotonic() - started < 2 + STOP_GRACE + 1.5
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived the stop"
        time.sleep(0.1)
