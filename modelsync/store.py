"""The local revision store and its atomic swap.

Layout (DESIGN.md):

    <store>/<model>/<version>/            what the server should serve now
    <store>/<model>/config.pbtxt          model-level files the server reads (Layout)
    <store>/<model>/current -> <version>  relative symlink, swapped by rename; for
                                          servers that scan the tree it lives at
                                          <state>/active/<model> instead
    <state>/revisions/<model>/<version>/  retained older revisions (rollback targets)
    <state>/model-files/<model>/          the model-level files before an activation
    <state>/staging/<model>/...           the revision being assembled; wiped at every pass
    <state>/partial/<model>/...           files being fetched, kept so a cut download
                                          resumes (partial.py)
    <state>/quarantine/<model>/<version>/ revisions the server refused, for inspection
    <state>/foreign/<model>/              what was found in the served tree (foreign.py)
    <state>/state/<model>.json            refused versions, pin, journal (state.py)

The two directories themselves are checked and prepared by volume.py.

Only admitted trees are ever renamed into ``<store>/<model>/``: ``activate`` and
``resume`` take an ``Admitted`` (modelsync.admitted), which only admission makes. During an
activation the previous version stays beside the new one until the server confirms
(so a "latest version" server keeps serving and rollback is one rename), then it
moves to ``revisions/``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from modelsync.admitted import Admitted
from modelsync.cancel import CancelToken
from modelsync.errors import ManifestError, StoreError
from modelsync.foreign import evict_foreign, move_aside, strip_unlisted
from modelsync.fsutil import (
    move_dir,
    open_regular_rw,
    read_regular,
    remove_tree,
    store_error,
    swap_symlink,
)
from modelsync.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest, parse_version
from modelsync.modelfiles import ModelFiles
from modelsync.partial import PartialDownloads
from modelsync.state import ModelState, Pending

__all__ = ["CURRENT", "Layout", "ModelStore"]

CURRENT = "current"
# Refused revisions kept for inspection; older ones are deleted.
QUARANTINE_KEEP = 2


@dataclass(frozen=True)
class Layout:
    """What one model's server needs to find in ``<store>/<model>/``."""

    # <store>/<model>/current for servers that load it; elsewhere it would be scanned.
    link_current: bool = True
    # Files a revision carries that the server reads from <store>/<model>/.
    model_files: tuple[str, ...] = ()
    # Only the version being served is in the directory, even during an activation.
    exclusive: bool = False


class ModelStore:
    """One model's part of the store. Every method re-reads the disk."""

    def __init__(self, name: str, directory: Path, state_dir: Path, layout: Layout) -> None:
        self.name = name
        self.dir = directory
        self.layout = layout
        in_tree, in_state = directory / CURRENT, state_dir / "active" / name
        self.current, self._other_current = (
            (in_tree, in_state) if layout.link_current else (in_state, in_tree)
        )
        self.cache_dir = state_dir / "revisions" / name
        self.foreign_dir = state_dir / "foreign" / name
        self.staging_root = state_dir / "staging" / name
        self.partial = PartialDownloads(state_dir / "partial" / name)
        self.quarantine_dir = state_dir / "quarantine" / name
        self.state_path = state_dir / "state" / f"{name}.json"
        self.verified_path = state_dir / "verified" / f"{name}.json"
        self.lock_path = state_dir / "locks" / f"{name}.lock"
        self.trash = state_dir / "trash" / name
        self.tmp = state_dir / "tmp" / name
        self.model_files = ModelFiles(
            directory, layout.model_files, state_dir / "model-files" / name, self.tmp, self.trash
        )

    # -- reading -------------------------------------------------------------

    def active_version(self) -> int | None:
        """The version ``current`` points at, or None when there is none (or it dangles)."""
        try:
            target = os.readlink(self.current)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return None  # not a link (a file or directory put there): no active version
            raise store_error("read link", self.current, exc) from exc
        version = parse_version(target)
        if version is None or not (self.dir / target).is_dir():
            return None
        return version

    def served_versions(self) -> list[int]:
        return _versions_in(self.dir)

    def cached_versions(self) -> list[int]:
        return _versions_in(self.cache_dir)

    def path_of(self, version: int) -> Path | None:
        """Where a retained copy of ``version`` lives, served or cached."""
        for base in (self.dir, self.cache_dir):
            path = base / str(version)
            if path.is_dir():
                return path
        return None

    def retained(self) -> dict[int, Path]:
        """Every complete local revision: served ones and cached ones."""
        found = {v: self.cache_dir / str(v) for v in self.cached_versions()}
        found.update({v: self.dir / str(v) for v in self.served_versions()})
        return found

    def manifest_of(self, version: int) -> Manifest | None:
        path = self.path_of(version)
        if path is None:
            return None
        try:
            return Manifest.parse(read_regular(path / MANIFEST_NAME, MAX_MANIFEST_BYTES), str(path))
        except (OSError, StoreError, ManifestError):
            return None

    def reuse_index(self) -> dict[str, Path]:
        """sha256 → a file with those bytes in a retained revision (to hard-link from)."""
        index: dict[str, Path] = {}
        for version, path in sorted(self.retained().items(), reverse=True):
            manifest = self.manifest_of(version)
            for entry in manifest.files if manifest else ():
                candidate = path / entry.path
                if (
                    entry.sha256 not in index
                    and candidate.is_file()
                    and candidate.stat().st_size == entry.size
                ):
                    index[entry.sha256] = candidate
        return index

    def load_state(self) -> ModelState:
        return ModelState.load(self.state_path)

    def save_state(self, state: ModelState) -> None:
        state.save(self.state_path)

    # -- locking and staging -------------------------------------------------

    @contextlib.contextmanager
    def lock(self, cancel: CancelToken) -> Iterator[None]:
        """Hold this model's lock (one writer per model across processes).

        The lock file is opened by ``open_regular_rw``: anything else planted under its
        name (a FIFO that would block the open before the pass deadline can act, a
        directory, a link to a file elsewhere) and a read-only volume fail the pass in
        one line, before anything in the store is touched."""
        fd = open_regular_rw(self.lock_path)
        waits = 0
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancel.cancelled():
                        raise StoreError(
                            f"model {self.name}: another modelsync process holds {self.lock_path}"
                        ) from None
                    waits += 1
                    if waits == 5:  # a second: said once, not left to look like a hang
                        left = cancel.remaining()
                        structlog.get_logger().info(
                            "waiting for another modelsync process (the daemon, a sync or a "
                            "rollback) to release the model's lock",
                            model=self.name,
                            lock=str(self.lock_path),
                            up_to_s=None if left is None else round(left),
                        )
                    cancel.stop_event.wait(0.2)
                except OSError as exc:
                    raise store_error("lock", self.lock_path, exc) from exc
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def evict_foreign(self, state: ModelState) -> list[Path]:
        """Move aside every entry of the served tree that is not the active revision or
        one an interrupted activation journalled (foreign.py)."""
        keep = {self.active_version()}
        if state.pending is not None:
            keep |= {state.pending.version, state.pending.previous}
        return evict_foreign(
            self.dir,
            self.current,
            self.foreign_dir,
            {v for v in keep if v is not None},
            owned_files=self.layout.model_files,
        )

    def align_layout(self) -> None:
        """Keep the pointer to the active version where this layout wants it (the
        server preset or current_link changed since the last pass)."""
        if not self._other_current.is_symlink():
            return
        if not self.current.is_symlink():
            self.current.parent.mkdir(parents=True, exist_ok=True)
            swap_symlink(self.current, os.readlink(self._other_current), self.tmp)
        remove_tree(self._other_current, self.trash)

    def clean_staging(self) -> None:
        """Remove leftovers of interrupted downloads, removals and link swaps.

        These live only under the state directory, which no server reads, so a
        plain recursive delete is safe here.
        """
        for path in (self.staging_root, self.trash, self.tmp):
            try:
                if path.is_symlink():
                    path.unlink()  # the link only, never what it points at
                    continue
                shutil.rmtree(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise store_error("clean", path, exc) from exc

    def new_staging(self, version: int) -> Path:
        path = self.staging_root / f"{version}-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise store_error("create", path, exc) from exc
        return path

    # -- the swap --------------------------------------------------------------

    def activate(
        self,
        admitted: Admitted,
        previous: int | None,
        state: ModelState,
        retire_to: str = "quarantine",
    ) -> None:
        """Put the admitted tree in place and point ``current`` at it.

        The journal entry is written first, so a crash at any point after it is
        finished (or undone) by the next pass, which admits the tree again.
        """
        version, tree = admitted.version, admitted.tree
        self.model_files.backup()
        state.pending = Pending(
            version,
            previous,
            "activating",
            "cache" if retire_to == "cache" else "quarantine",
            manifest_sha256=admitted.manifest_sha256,
        )
        self.save_state(state)
        target = self.dir / str(version)
        if tree != target:
            if target.exists() or target.is_symlink():
                # Not the admitted tree (a leftover, a link): never served, never merged.
                move_aside(target, self.foreign_dir)
            move_dir(tree, target)
        # A cached copy of the version now served (a revision downloaded again after
        # a manual rollback) would otherwise sit in the cache beside it.
        remove_tree(self.cache_dir / str(version), self.trash)
        self._place(version, previous)

    def resume(self, admitted: Admitted, state: ModelState) -> None:
        """Finish putting in place the activation a crash interrupted; its tree, at the
        target already, was admitted again."""
        pending = state.pending
        assert pending is not None and pending.version == admitted.version
        assert admitted.tree == self.dir / str(pending.version)
        self._place(pending.version, pending.previous)

    def abandon(self, state: ModelState) -> None:
        """Undo an interrupted activation whose tree was not admitted again (killed
        before it was moved in, or not the tree that was verified)."""
        pending = state.pending
        assert pending is not None
        tree = self.dir / str(pending.version)
        if tree.exists() or tree.is_symlink():
            move_aside(tree, self.foreign_dir)
        if self.current.is_symlink() and os.readlink(self.current) == str(pending.version):
            self._point_to_previous(pending.previous)
        state.pending = None
        self.save_state(state)

    def _place(self, version: int, previous: int | None) -> None:
        self.model_files.place(version)
        if self.layout.exclusive and previous is not None and previous != version:
            self._retire(previous)
        self._point_current(version)
        self._hide_newer_than(version)

    def commit(self, state: ModelState, keep: int, now: float) -> list[int]:
        """Retire the previous version to the cache and trim the cache; return removed."""
        pending = state.pending
        assert pending is not None
        if pending.previous is not None and pending.previous != pending.version:
            self._retire(pending.previous)
        state.pending = None
        state.activated_at = now
        state.last_success_at = now
        state.rollback_failed = False
        self.save_state(state)
        return self.prune(keep)

    def rollback(self, state: ModelState) -> None:
        """Put the previous version back behind ``current`` and retire the new one."""
        pending = state.pending
        assert pending is not None
        pending.phase = "rolling_back"
        self.save_state(state)
        previous = pending.previous
        if previous is not None:
            source = self.path_of(previous)
            if source is None:
                raise StoreError(f"model {self.name}: previous version {previous} is gone")
            if source.parent != self.dir:
                move_dir(source, self.dir / str(previous))
            self._point_current(previous)
        elif self.current.is_symlink():
            remove_tree(self.current, self.trash)
        self.model_files.restore()
        bad = self.dir / str(pending.version)
        if bad.is_dir() and pending.version != previous:
            if pending.retire_to == "cache":
                move_dir(bad, self.cache_dir / str(pending.version))
            else:
                dest = self.quarantine_dir / str(pending.version)
                remove_tree(dest, self.trash)
                move_dir(bad, dest)
                self._trim(self.quarantine_dir, QUARANTINE_KEEP)

    def prune(self, keep: int) -> list[int]:
        """Keep ``keep - 1`` cached revisions besides the active one; remove the rest."""
        return self._trim(self.cache_dir, keep - 1)

    # -- helpers ---------------------------------------------------------------

    def _point_current(self, version: int) -> None:
        if self.active_version() != version or os.readlink(self.current) != str(version):
            self.current.parent.mkdir(parents=True, exist_ok=True)
            swap_symlink(self.current, str(version), self.tmp)

    def _point_to_previous(self, previous: int | None) -> None:
        """Undo a pointer swap to a tree that turned out not to be the verified one."""
        source = self.path_of(previous) if previous is not None else None
        if previous is not None and source is not None:
            if source.parent != self.dir:
                move_dir(source, self.dir / str(previous))
            self._point_current(previous)
        else:
            remove_tree(self.current, self.trash)
        self.model_files.restore()

    def _retire(self, version: int | None) -> None:
        """Move a served version to the cache (replacing a stale cached copy)."""
        served = self.dir / str(version)
        if version is None or not served.is_dir():
            return
        dest = self.cache_dir / str(version)
        remove_tree(dest, self.trash)
        move_dir(served, dest)
        # What the server wrote while it served it (caches) is not the revision: a
        # retained copy must equal its manifest to be admitted again.
        strip_unlisted(dest, self.trash)

    def _hide_newer_than(self, version: int) -> None:
        """Move served versions newer than ``version`` to the cache.

        Servers with a "latest" version policy (TF Serving, Triton) serve the highest
        number in the directory; going back to an older version means the newer
        ones must leave it.
        """
        for other in self.served_versions():
            if other > version:
                self._retire(other)

    def _trim(self, directory: Path, keep: int) -> list[int]:
        versions = _versions_in(directory)
        doomed = versions[: max(0, len(versions) - keep)]
        for version in doomed:
            remove_tree(directory / str(version), self.trash)
        return doomed


def _versions_in(directory: Path) -> list[int]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise store_error("list", directory, exc) from exc
    versions = []
    for name in names:
        version = parse_version(name)
        if version is not None and (directory / name).is_dir():
            versions.append(version)
    return sorted(versions)
