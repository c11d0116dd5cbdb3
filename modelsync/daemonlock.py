"""One daemon per store: ``<state_dir>/locks/daemon.lock``, held with flock.

Two daemons on one store would each swap, retire and roll back what the other
serves. The lock file holds the holder's pid, so the second one can say which
process to look at; the kernel releases the lock whatever way the holder ends
(kill -9 included), so a stale file never keeps a daemon from starting.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from modelsync.errors import StoreError
from modelsync.fsutil import open_regular_rw, store_error

__all__ = ["DaemonLock"]


class DaemonLock:
    """The store's daemon lock; ``acquire`` raises StoreError naming the holder's pid."""

    def __init__(self, state_dir: Path, store: Path) -> None:
        self.path = state_dir / "locks" / "daemon.lock"
        self._store = store
        self._fd: int | None = None

    def acquire(self) -> None:
        # open_regular_rw: a FIFO planted here cannot block the start, nor a link make
        # the daemon create or truncate a file elsewhere; a directory or a read-only
        # volume is one line, not a traceback.
        fd = open_regular_rw(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            except OSError:
                holder = "unknown"
            os.close(fd)
            raise StoreError(
                f"another modelsync daemon (pid {holder}) already runs on store {self._store} "
                f"(it holds {self.path}); stop it first, or give this one its own store"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise store_error("lock", self.path, exc) from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise store_error("write", self.path, exc) from exc
        self._fd = fd

    def release(self) -> None:
        """Empty the file and unlock it (exit unlocks it too)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)
