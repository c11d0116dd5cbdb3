"""Foreign entries: what is in a model's served directory that modelsync did not put
there, moved aside before any pass can serve it; and what a server wrote into a
revision, stripped when the revision leaves the served directory.

In the served directory, every entry but the active revision (or one an interrupted
activation journalled), the ``current`` link and the layout's model-level files — a
leftover of another tool, a junk ``99``, a ``09`` or `` 9`` a server would read as a
version, a link, a copy someone planted, even one that looks intact — and a pointer
to the active version that is not a symbolic link, go to
``<state_dir>/foreign/<model>/``, where an operator can look at them; nothing
there is ever served or deleted by modelsync. A revision only enters the served
directory through admission (modelsync.sync.admit).
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Collection, Set
from pathlib import Path

from modelsync.errors import ManifestError, StoreError
from modelsync.fsutil import fsync_dir, read_regular, remove_tree, store_error
from modelsync.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    RESERVED_NAMES,
    Manifest,
    parse_version,
)

__all__ = ["evict_foreign", "manifest_digest", "move_aside", "number_like", "strip_unlisted"]


def manifest_digest(tree: Path) -> str:
    """sha256 of the manifest in ``tree`` ('' when it has none or it is unreadable)."""
    try:
        return hashlib.sha256(read_regular(tree / MANIFEST_NAME, MAX_MANIFEST_BYTES)).hexdigest()
    except (OSError, StoreError):
        return ""


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


def evict_foreign(
    model_dir: Path,
    pointer: Path,
    aside: Path,
    keep: Set[int],
    *,
    owned_files: Collection[str] | None = None,
) -> list[Path]:
    """Move out of ``model_dir`` every entry that is not one modelsync owns there, and a
    ``pointer`` that is not a link; return where they went.

    Owned: a directory whose name is an exact version (manifest.parse_version, the one
    grammar) in ``keep``; ``pointer`` as a link, when it is in ``model_dir``; and the
    regular files named in ``owned_files`` (the layout's model-level files, Triton's
    ``config.pbtxt``). Everything else goes, whatever its name: a server reads names
    more loosely than modelsync (TF Serving loads ``09``, `` 9`` or ``9 `` as version
    9), so "not a version to modelsync" must never mean "left for the server".
    ``owned_files`` None (a caller that does not say which model-level files it
    places): a regular file stays unless its name reads as a number to a lenient
    parser; every directory, link or special file that is not owned still goes.
    """
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
        path = model_dir / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue  # gone since the listing
        except OSError as exc:
            raise store_error("inspect", path, exc) from exc
        if not _owned(name, mode, model_dir, pointer, keep, owned_files):
            moved.append(move_aside(path, aside))
    return moved


def _owned(
    name: str,
    mode: int,
    model_dir: Path,
    pointer: Path,
    keep: Set[int],
    owned_files: Collection[str] | None,
) -> bool:
    """Whether the entry ``name`` (of type ``mode``, not followed) of ``model_dir`` is
    one modelsync keeps there (evict_foreign)."""
    if stat.S_ISDIR(mode):
        version = parse_version(name)
        return version is not None and version in keep
    if stat.S_ISLNK(mode):
        return pointer.parent == model_dir and name == pointer.name
    if not stat.S_ISREG(mode):
        return False  # a FIFO, socket or device: never a model's file
    if owned_files is not None:
        return name in owned_files
    return not number_like(name)


def number_like(name: str) -> bool:
    """Whether some server could read ``name`` as a number: Python's int() is at least
    as lenient as TF Serving's safe_strto64 (whitespace, sign, leading zeros) and more
    (underscores, non-ASCII digits)."""
    try:
        int(name)
    except ValueError:
        return False
    return True


def strip_unlisted(tree: Path, trash: Path) -> list[str]:
    """Remove from ``tree`` every entry its manifest does not list (files a server
    wrote while serving it: caches, logs); return what was removed. A tree whose
    manifest cannot be read is left as it is: admission refuses it anyway."""
    try:
        manifest = Manifest.parse(read_regular(tree / MANIFEST_NAME, MAX_MANIFEST_BYTES), str(tree))
    except (OSError, StoreError, ManifestError):
        return []
    files = {entry.path for entry in manifest.files} | RESERVED_NAMES
    dirs = {
        "/".join(parts[:i])
        for parts in (path.split("/") for path in files)
        for i in range(1, len(parts))
    }
    removed: list[str] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(tree / rel_dir if rel_dir else tree))
        except OSError as exc:
            raise store_error("list", tree / rel_dir, exc) from exc
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode) and rel in dirs:
                stack.append(rel)
            elif not (stat.S_ISREG(mode) and rel in files):
                remove_tree(tree / rel, trash)
                removed.append(rel)
    return removed
