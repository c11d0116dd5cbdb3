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

__all__ = ["DaemonLock"]


class DaemonLock:
    """The store's daemon lock; ``acquire`` raises StoreError naming the holder's pid."""

    def __init__(self, state_dir: Path, store: Path) -> None:
        self.path = state_dir / "locks" / "daemon.lock"
        self._store = store
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the daemon lock: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"another modelsync daemon (pid {holder}) already runs on store {self._store} "
                f"(it holds {self.path}); stop it first, or give this one its own store"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Empty the file and unlock it (exit unlocks it too)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)
