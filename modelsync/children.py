"""Child processes under a time limit and the pass's token (notify, confirm, validate).

Each child runs in its own session, so what it starts goes with it. It is waited on
in short slices, bounded by min(its own timeout, the pass deadline), and when either
runs out or a stop is requested the whole group gets SIGTERM, then SIGKILL after
STOP_GRACE: a child that ignores SIGTERM cannot hold the daemon's 5 s stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from modelsync.cancel import CancelToken

__all__ = ["STOP_GRACE", "ChildTimedOut", "Finished", "run_child"]

# How long a child has after SIGTERM before SIGKILL.
STOP_GRACE = 1.5
_SLICE = 0.1


class ChildTimedOut(Exception):
    """The child's own time limit ran out (it was stopped)."""


@dataclass(frozen=True)
class Finished:
    returncode: int
    stderr: bytes


def run_child(
    argv: Sequence[str], env: dict[str, str], timeout: float, cancel: CancelToken | None
) -> Finished:
    """Run ``argv`` to its end; ChildTimedOut past ``timeout``, Cancelled when the token
    fires (the child stopped either way); FileNotFoundError/OSError when it cannot start."""
    child = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    end = time.monotonic() + timeout
    with child:
        try:
            while True:
                try:
                    _, err = child.communicate(timeout=_SLICE)
                    return Finished(child.returncode, err or b"")
                except subprocess.TimeoutExpired:
                    if cancel is not None:
                        cancel.check()
                    if time.monotonic() >= end:
                        raise ChildTimedOut(f"did not finish within {timeout:g}s") from None
        except BaseException:
            _stop(child)
            raise


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child's group, SIGKILL after STOP_GRACE."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)
        try:
            child.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except (OSError, ValueError):
            return
