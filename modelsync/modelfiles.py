"""Model-level files: what a server reads from <store>/<model>/ beside the versions.

Triton reads ``config.pbtxt`` there, outside any version, so a revision that carries
one must have it put in place with the version, and a rollback must put back the
one that was there before. Each file is copied through the state directory and
renamed into place, so a server never sees a half-written one.
"""

from __future__ import annotations

from pathlib import Path

from modelsync.fsutil import atomic_write_bytes, read_regular, remove_tree

__all__ = ["ModelFiles"]

# config.pbtxt and its kind are a few KiB; a larger one is not a model-level file.
_FILE_LIMIT = 16 << 20


def _install(source: Path, dest: Path, tmp: Path) -> None:
    """Copy a (small) model-level file into place in one rename, made in ``tmp``."""
    data = read_regular(source, _FILE_LIMIT)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, data, tmp_dir=tmp)


class ModelFiles:
    def __init__(
        self, model_dir: Path, names: tuple[str, ...], backup_dir: Path, tmp: Path, trash: Path
    ) -> None:
        self._dir = model_dir
        self._names = names
        self._backup = backup_dir
        self._tmp = tmp
        self._trash = trash

    def backup(self) -> None:
        """Keep the files as they are before an activation (``restore`` puts them back)."""
        if not self._names:
            return
        remove_tree(self._backup, self._trash)
        for name in self._names:
            placed = self._dir / name
            if placed.is_file() and not placed.is_symlink():
                _install(placed, self._backup / name, self._tmp)

    def place(self, version: int) -> None:
        """Put the files the revision ``version`` carries where the server reads them;
        a file the revision lacks stays as it is."""
        for name in self._names:
            carried = self._dir / str(version) / name
            if carried.is_file() and not carried.is_symlink():
                _install(carried, self._dir / name, self._tmp)

    def restore(self) -> None:
        """The files as ``backup`` saw them (absent ones removed)."""
        for name in self._names:
            saved = self._backup / name
            if saved.is_file():
                _install(saved, self._dir / name, self._tmp)
            else:
                remove_tree(self._dir / name, self._trash)
