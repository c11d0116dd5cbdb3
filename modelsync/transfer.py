"""Download one revision into staging: parallel, bounded, verified, deduplicated.

Files whose sha256 is already on local disk (in a retained revision, or fetched by
an interrupted pass) are hard-linked instead of fetched, once their bytes are checked
again. Files with a sha256 are fetched into the kept partial downloads (partial.py),
so an interrupted download resumes there; every fetched file is bounded to its
declared size while it streams and checked against its sha256 when complete; the
first failure cancels the remaining downloads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from modelsync.cancel import CancelToken
from modelsync.errors import IntegrityError, RefusedError
from modelsync.fsutil import store_error
from modelsync.manifest import FileEntry, Manifest, hash_file
from modelsync.partial import PartialDownloads
from modelsync.retry import RetryPolicy, call_with_retry
from modelsync.sources.base import OversizeError, Sink, Source
from modelsync.sources.journal import RangeJournal

__all__ = ["TransferStats", "download_revision", "safe_join"]

# Fetches of a file whose bytes differ from the manifest before deciding (see
# _fetch_verified): two equal wrong results refuse, all different fail the pass.
_CONTENT_ATTEMPTS = 3


@dataclass
class TransferStats:
    bytes_fetched: int = 0
    files_fetched: int = 0
    files_linked: int = 0
    bytes_linked: int = 0
    # Bytes of fetched files that an interrupted download had kept (not fetched again).
    bytes_resumed: int = 0
    # sha256 of every file fetched, by path (fills in manifests synthesised from a listing).
    digests: dict[str, str] = field(default_factory=dict)


def safe_join(root: Path, relpath: str) -> Path:
    """``root/relpath``, refusing anything that would land outside ``root``."""
    path = (root / relpath).resolve()
    if root.resolve() not in path.parents:
        raise RefusedError(f"{relpath!r} would be written outside the staging directory")
    return path


class _Joiner:
    """safe_join for many files of one tree: each directory is resolved once (two
    realpath walks per file were a tenth of the per-file CPU on 1,000 small files).
    The file itself is opened with O_NOFOLLOW (Sink), so a link there is refused too."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real = root.resolve()
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, relpath: str) -> Path:
        parent = relpath.rpartition("/")[0]
        with self._lock:
            if parent not in self._checked:
                real = (self.root / parent).resolve()
                if real != self._real and self._real not in real.parents:
                    raise RefusedError(
                        f"{relpath!r} would be written outside the staging directory"
                    )
                self._checked.add(parent)
        return self.root / relpath


class _Counter:
    def __init__(self, on_bytes: Callable[[int], None] | None) -> None:
        self._lock = threading.Lock()
        self._on_bytes = on_bytes
        self.stats = TransferStats()

    def fetched(self, path: str, size: int, digest: str, resumed: int = 0) -> None:
        with self._lock:
            self.stats.files_fetched += 1
            self.stats.bytes_fetched += size - resumed
            self.stats.bytes_resumed += resumed
            self.stats.digests[path] = digest

    def linked(self, size: int) -> None:
        with self._lock:
            self.stats.files_linked += 1
            self.stats.bytes_linked += size
        if self._on_bytes:
            self._on_bytes(size)


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copyfile(src, dest)


def download_revision(
    source: Source,
    manifest: Manifest,
    staging: Path,
    reuse: Mapping[str, Path],
    *,
    concurrency: int,
    cancel: CancelToken,
    retry: RetryPolicy,
    on_bytes: Callable[[int], None] | None = None,
    partial: PartialDownloads | None = None,
) -> TransferStats:
    """Fill ``staging`` with every file of ``manifest``, verified; raise on the first failure.

    With ``partial``, files are fetched (and kept, should the pass be cut) there and
    linked into ``staging`` once verified.
    """
    log = structlog.get_logger().bind(version=manifest.version)
    counter = _Counter(on_bytes)
    local = cancel.child()
    label = f"{source.url}/{manifest.version}"
    join = _Joiner(staging)

    def one(entry: FileEntry) -> tuple[FileEntry, Path, bool]:
        local.check()
        dest = join(entry.path)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            existing = reuse.get(entry.sha256)
            # A retained file may have been changed on disk since it was verified (a
            # server can write where it reads): its bytes are checked before reuse.
            if existing is not None and hash_file(existing) == (entry.size, entry.sha256):
                _link_or_copy(existing, dest)
                counter.linked(entry.size)
                return entry, dest, False
            if existing is not None:
                log.warning("a retained file changed on disk; fetching it", file=str(existing))
        except OSError as exc:
            raise store_error("write", dest, exc) from exc
        keep = partial is not None and bool(entry.sha256)
        target, journal = partial.part(entry.sha256) if partial and keep else (dest, None)
        fetch = _Fetch(
            source,
            manifest.version,
            entry,
            target,
            f"{label}/{entry.path}",
            local,
            retry,
            log,
            on_bytes,
            journal,
        )
        try:
            digest, resumed = fetch.verified()
        except RefusedError:
            if partial is not None and keep:
                partial.discard(entry.sha256)
            raise
        counter.fetched(entry.path, entry.size, digest, resumed)
        return entry, dest, keep

    def finish(done: tuple[FileEntry, Path, bool]) -> None:
        """Mark a verified kept download complete and link it into the revision, and
        link the entries with the same content. On the pass's own thread: workers
        only write bytes, every rename is in order."""
        entry, dest, kept = done
        try:
            if kept and partial is not None:
                _link_or_copy(partial.finish(entry.sha256), dest)
            for twin in twins.get(entry.sha256, ()) if entry.sha256 else ():
                twin_dest = join(twin.path)
                twin_dest.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(dest, twin_dest)
                counter.linked(twin.size)
        except OSError as exc:
            raise store_error("write", dest, exc) from exc

    # Entries with the same content are fetched once and linked (and must be: two
    # fetches would share one kept partial file).
    ordered: list[FileEntry] = []
    twins: dict[str, list[FileEntry]] = {}
    for entry in sorted(manifest.files, key=lambda e: e.size, reverse=True):
        if entry.sha256 and entry.sha256 in twins:
            twins[entry.sha256].append(entry)
            continue
        if entry.sha256:
            twins[entry.sha256] = []
        ordered.append(entry)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch") as pool:
        futures = [pool.submit(one, entry) for entry in ordered]
        finished: set[Future[tuple[FileEntry, Path, bool]]] = set()
        try:
            for future in as_completed(futures):
                if future.exception() is None:
                    finished.add(future)
                    finish(future.result())
                    continue
                local.stop_event.set()
                wait(futures)
                # What did arrive complete is kept complete for the next pass.
                for other in futures:
                    if other not in finished and other.exception() is None:
                        finish(other.result())
                # Report the first real failure, not the Cancelled it caused in the others.
                errors = [f.exception() for f in futures if f.exception() is not None]
                primary = next((e for e in errors if not local.caused(e)), errors[0])
                assert primary is not None
                raise primary
        except BaseException:
            local.stop_event.set()
            raise
    return counter.stats


@dataclass(frozen=True)
class _Fetch:
    """One file of a revision to fetch into ``dest`` and verify."""

    source: Source
    version: int
    entry: FileEntry
    dest: Path
    label: str
    cancel: CancelToken
    retry: RetryPolicy
    log: structlog.typing.FilteringBoundLogger
    on_bytes: Callable[[int], None] | None
    # Set when ``dest`` is a kept partial download: its bytes survive an interruption.
    journal: RangeJournal | None = None

    def verified(self) -> tuple[str, int]:
        """Fetch, check size, and sha256 unless the entry has none (a listing-derived
        entry, whose integrity is the storage checksum); return the sha256.

        Bytes that differ from the manifest are fetched again: the revision is refused
        only when two fetches bring the same wrong bytes (the stored object is wrong);
        different wrong bytes each time are damage in transit (IntegrityError: the
        pass fails and is retried, the revision is not refused).
        """
        outcomes: set[str] = set()
        for _ in range(_CONTENT_ATTEMPTS):
            digest, problem, resumed = self._once()
            if problem is None:
                return digest, resumed
            if problem in outcomes:
                raise RefusedError(problem)
            outcomes.add(problem)
            self.log.warning(
                "bytes differ from the manifest; fetching again", file=self.label, problem=problem
            )
        raise IntegrityError(
            f"{self.label}: bytes differed from the manifest on {_CONTENT_ATTEMPTS} fetches, "
            "differently each time (damaged in transit); the pass will be retried"
        )

    def _once(self) -> tuple[str, str | None, int]:
        """(sha256, None, bytes resumed) for a file that matches its entry; ('', what
        was wrong, 0) otherwise, with ``dest`` removed."""
        entry, dest, label = self.entry, self.dest, self.label
        try:
            sink = Sink(dest, entry.size, label, self.on_bytes, self.journal)
        except OSError as exc:
            raise store_error("write", dest, exc) from exc
        try:

            def attempt() -> None:
                if sink.written:
                    sink.reset()
                self.source.fetch(self.version, entry.path, sink, self.cancel)

            call_with_retry(attempt, self.retry, self.cancel, label, self.log)
            digest = sink.finish()
        except BaseException as exc:
            sink.close()
            if isinstance(exc, OversizeError):
                self._drop()
                return "", f"{exc} (sha256 of what arrived {exc.received[:12]}…)", 0
            if self.journal is None:
                self._drop()
            # A kept partial download stays for the next pass (its journal says what
            # is complete; each kept range is checked again before it is used).
            raise
        if sink.written != entry.size:
            self._drop()
            return "", f"{label}: got {sink.written} bytes, manifest says {entry.size}", 0
        if entry.sha256 and digest != entry.sha256:
            self._drop()
            return "", f"{label}: sha256 {digest[:12]}… does not match the manifest", 0
        return digest, None, sink.resumed

    def _drop(self) -> None:
        """Forget what arrived: the file, and the journal that vouched for its ranges."""
        for path in (self.dest, self.journal.path if self.journal else None):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
