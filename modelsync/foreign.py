"""Foreign entries: what is in a model's served directory that modelsync did not put
there, moved aside before any pass can serve it.

A version-named entry that is not a directory holding a manifest of that version (a
leftover of another tool, a junk ``99``, a link), and a pointer to the active version
that is not a symbolic link, go to ``<state_dir>/foreign/<model>/``, where an
operator can look at them; nothing there is ever served or deleted by modelsync.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from modelsync.errors import ManifestError
from modelsync.fsutil import fsync_dir, store_error
from modelsync.manifest import MANIFEST_NAME, Manifest, parse_version, verify_dir

__all__ = ["evict_foreign", "manifest_digest", "move_aside", "tree_is"]


def manifest_digest(tree: Path) -> str:
    """sha256 of the manifest in ``tree`` ('' when it has none): what an activation
    journals, so that recovery activates that tree and no other."""
    try:
        return hashlib.sha256((tree / MANIFEST_NAME).read_bytes()).hexdigest()
    except OSError:
        return ""


def tree_is(tree: Path, version: int, digest: str) -> bool:
    """Whether ``tree`` is the verified revision ``version`` whose manifest has ``digest``:
    a real directory, that manifest, every file as it lists (extra files allowed).
    An empty ``digest`` (a journal written by modelsync 0.1) accepts any manifest of
    that version whose files verify."""
    if tree.is_symlink() or not tree.is_dir():
        return False
    if digest and manifest_digest(tree) != digest:
        return False
    try:
        manifest = Manifest.parse((tree / MANIFEST_NAME).read_bytes(), str(tree))
    except (OSError, ManifestError):
        return False
    return manifest.version == version and not verify_dir(tree, manifest, extra_ok=True)


def move_aside(path: Path, aside: Path) -> Path:
    """Rename ``path`` into ``aside`` (same filesystem) under a name that cannot clash."""
    dest = aside / f"{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        aside.mkdir(parents=True, exist_ok=True)
        path.rename(dest)
        fsync_dir(path.parent)
    except OSError as exc:
        raise store_error("move aside", path, exc) from exc
    return dest


def evict_foreign(model_dir: Path, pointer: Path, aside: Path) -> list[Path]:
    """Move foreign entries out of ``model_dir`` (and a ``pointer`` that is not a link);
    return where they went."""
    moved: list[Path] = []
    if pointer.exists() and not pointer.is_symlink():
        moved.append(move_aside(pointer, aside))
    try:
        names = os.listdir(model_dir)
    except FileNotFoundError:
        return moved
    except OSError as exc:
        raise store_error("list", model_dir, exc) from exc
    for name in sorted(names):
        version = parse_version(name)
        if version is not None and not _is_revision(model_dir / name, version):
            moved.append(move_aside(model_dir / name, aside))
    return moved


def _is_revision(path: Path, version: int) -> bool:
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        manifest = Manifest.parse((path / MANIFEST_NAME).read_bytes(), str(path))
    except (OSError, ManifestError):
        return False
    return manifest.version == version
