"""The volume modelsync writes: the served tree and its state directory, checked at start.

Both must exist, share a filesystem (every swap is a rename between them), and the
state directory must hold no links among its own directories (following one would
write or delete elsewhere). A state directory that modelsync 0.1 kept inside the
served tree is moved out on the first run.
"""

from __future__ import annotations

import contextlib
import stat
from pathlib import Path

from modelsync.errors import ConfigError, StoreError
from modelsync.fsutil import fsync_dir, store_error
from modelsync.store import Layout, ModelStore

__all__ = ["LEGACY_STATE", "Store"]

# Where modelsync 0.1 kept its state by default: inside the served tree.
LEGACY_STATE = ".modelsync"
# The directories modelsync keeps under state_dir (none of them may be a link).
_STATE_PARTS = (
    "active",
    "foreign",
    "locks",
    "model-files",
    "partial",
    "quarantine",
    "revisions",
    "staging",
    "state",
    "tmp",
    "trash",
)

# Parts of the state directory that hold nothing a later pass needs as it is.
_DISPOSABLE = ("partial", "staging", "tmp")


def _remove_planted(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise store_error("read", path, exc) from exc
    if stat.S_ISDIR(info.st_mode):
        return
    try:
        path.unlink()  # a link itself, not what it points at
    except FileNotFoundError:
        return
    except OSError as exc:
        raise store_error("clean", path, exc) from exc


class Store:
    """The served tree and its state directory, which must share a filesystem."""

    def __init__(self, root: Path, state_dir: Path) -> None:
        self.root = root
        self.state_dir = state_dir

    def prepare(self) -> None:
        """Create both directories, move a 0.1 state directory out of the served tree,
        and check that renames between them are atomic (ConfigError when not)."""
        hint = (
            f"set state_dir to a writable directory on the filesystem of store {self.root}, "
            f"outside it (for a volume mounted at {self.root}: mount it one level up, e.g. "
            f'at /data, with store = "/data/{self.root.name}")'
        )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_error("create", self.root, exc) from exc
        self._move_legacy_state(hint)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create state_dir {self.state_dir}: {exc.strerror}; {hint}"
            ) from exc
        for part in _DISPOSABLE:
            # Work areas whose content is rebuilt at will: something planted where one
            # goes (a link, a FIFO, a file) is removed, never followed and never kept,
            # so it cannot fail every pass for good.
            _remove_planted(self.state_dir / part)
        for part in _STATE_PARTS:
            if (self.state_dir / part).is_symlink():
                # Following it would write (or delete) wherever it points.
                raise StoreError(
                    f"{self.state_dir / part} is a symbolic link; modelsync never follows "
                    "links in its state directory: remove it"
                )
        if self.root.stat().st_dev != self.state_dir.stat().st_dev:
            raise ConfigError(
                f"state_dir {self.state_dir} is on another filesystem than store {self.root}, "
                f"so renames between them would not be atomic; {hint}"
            )

    def _move_legacy_state(self, hint: str) -> None:
        legacy = self.root / LEGACY_STATE
        if legacy == self.state_dir or not legacy.is_dir():
            return
        if self.state_dir.exists() and any(self.state_dir.iterdir()):
            raise ConfigError(
                f"{legacy}: a modelsync 0.1 state directory inside the served tree, while "
                f"{self.state_dir} is in use; remove {legacy} (servers scan it)"
            )
        try:
            self.state_dir.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.state_dir.rmdir()
            legacy.rename(self.state_dir)
            fsync_dir(self.root)
        except OSError as exc:
            raise ConfigError(
                f"cannot move the 0.1 state directory {legacy} to {self.state_dir}: "
                f"{exc.strerror}; {hint}"
            ) from exc

    def model(self, name: str, layout: Layout | None = None) -> ModelStore:
        return ModelStore(name, self.root / name, self.state_dir, layout or Layout())
