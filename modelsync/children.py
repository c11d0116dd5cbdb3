"""Child processes under a time limit and the pass's token (notify, confirm, validate).

Each child runs in its own session, so what it starts goes with it. It is waited on
in short slices, bounded by min(its own timeout, the pass deadline), and when either
runs out or a stop is requested the whole group gets SIGTERM, then SIGKILL after
STOP_GRACE: a child that ignores SIGTERM cannot hold the daemon's 5 s stop.

What is waited for is the child's exit status, never its stderr pipe: a process it
left behind (``server &``, or a helper in a session of its own) inherits the pipe and
may hold it open for good. The pipe is read on a thread of its own into a bounded
tail (only the last lines are ever reported), and that reader is left to drain once
the child has exited, so a gigabyte of stderr costs no memory and a held pipe no time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from modelsync.cancel import CancelToken

__all__ = ["STDERR_TAIL", "STOP_GRACE", "ChildTimedOut", "Finished", "run_child"]

# How long a child has after SIGTERM before SIGKILL.
STOP_GRACE = 1.5
# The bytes of stderr kept, from its end: enough for the one-line error it ends in.
STDERR_TAIL = 8 * 1024
_SLICE = 0.1
# After the child exits, how long its stderr may take to reach end-of-file: what it
# wrote just before exiting is read; a pipe someone else holds is not waited for.
_DRAIN = 0.2
# A SIGKILLed child is gone at once; this only bounds a wait on the kernel.
_KILL_WAIT = 5.0
_CHUNK = 64 * 1024


class ChildTimedOut(Exception):
    """The child's own time limit ran out (it was stopped)."""


@dataclass(frozen=True)
class Finished:
    returncode: int
    # The last STDERR_TAIL bytes the child wrote to stderr.
    stderr: bytes

    def last_words(self, limit: int) -> str | None:
        """The end (``limit`` characters) of the last line the child wrote to stderr,
        None if it wrote nothing: after a tool's noise, its own words come last."""
        lines = self.stderr.decode(errors="replace").strip().splitlines()
        return lines[-1][-limit:] if lines else None


class _Tail:
    """Reads a pipe to its end on a daemon thread, keeping only its last bytes."""

    def __init__(self, pipe: IO[bytes], limit: int) -> None:
        self._pipe = pipe
        self._limit = limit
        self._buf = bytearray()
        self._lock = threading.Lock()
        # A daemon thread: a pipe held by a process the child left behind must not
        # hold the daemon at exit.
        self._thread = threading.Thread(target=self._read, name="child-stderr", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fd = self._pipe.fileno()
        try:
            while chunk := os.read(fd, _CHUNK):
                with self._lock:
                    self._buf += chunk
                    if len(self._buf) > self._limit:
                        del self._buf[: len(self._buf) - self._limit]
        except OSError:
            pass
        finally:
            self._pipe.close()

    def bytes(self, wait: float) -> bytes:
        """The tail so far, after waiting up to ``wait`` for end-of-file."""
        self._thread.join(wait)
        with self._lock:
            return bytes(self._buf)


def run_child(
    argv: Sequence[str], env: dict[str, str], timeout: float, cancel: CancelToken | None
) -> Finished:
    """Run ``argv`` to its exit; ChildTimedOut past ``timeout``, Cancelled when the
    token fires (the child's group stopped either way); FileNotFoundError/OSError when
    it cannot start."""
    child = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    assert child.stderr is not None
    # The reader owns and closes the pipe: closing it under a read in flight is not safe.
    tail = _Tail(child.stderr, STDERR_TAIL)
    end = time.monotonic() + timeout
    try:
        while True:
            try:
                returncode = child.wait(timeout=_SLICE)
                return Finished(returncode, tail.bytes(_DRAIN))
            except subprocess.TimeoutExpired:
                if cancel is not None:
                    cancel.check()
                if time.monotonic() >= end:
                    raise ChildTimedOut(f"did not finish within {timeout:g}s") from None
    except BaseException:
        _stop(child)
        raise


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child's group, SIGKILL to what is left of it after STOP_GRACE.
    Only the processes are waited for: one that left the group may hold the pipe."""
    _signal_group(child.pid, signal.SIGTERM)
    end = time.monotonic() + STOP_GRACE
    while time.monotonic() < end:
        if child.poll() is not None and not _signal_group(child.pid, 0):
            return
        time.sleep(_SLICE / 2)
    _signal_group(child.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=_KILL_WAIT)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group (0: only ask); False when none of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
