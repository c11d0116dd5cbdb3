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
import hashlib
import os
import shutil
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from modelsync.cancel import CancelToken
from modelsync.errors import IntegrityError, RefusedError
from modelsync.fsutil import store_error
from modelsync.manifest import FileEntry, Manifest
from modelsync.partial import PartialDownloads
from modelsync.retry import RetryPolicy, call_with_retry
from modelsync.sources.base import OversizeError, Sink, Source
from modelsync.sources.journal import RangeJournal
from modelsync.sources.ranges import MIN_RANGE_THRESHOLD
from modelsync.verified import identity
from modelsync.workers import Workers

__all__ = ["SMALL_CONCURRENCY", "TransferStats", "download_revision", "safe_join"]

# Fetches of a file whose bytes differ from the manifest before deciding (see
# _fetch_verified): two equal wrong results refuse, all different fail the pass.
_CONTENT_ATTEMPTS = 3

# Files in flight by default when most are small (config: small_concurrency). 32 from
# the latency-shaped bench (30 ms per request): whole sync 4.83 s at 16, 4.27 s at 32,
# 4.90 s at 64 (docs/performance.md).
SMALL_CONCURRENCY = 32
# Reads of a reused file while it is hashed.
_HASH_CHUNK = 1024 * 1024


@dataclass
class TransferStats:
    bytes_fetched: int = 0
    files_fetched: int = 0
    files_linked: int = 0
    bytes_linked: int = 0
    # Bytes of fetched files that an interrupted download had kept (not fetched again).
    bytes_resumed: int = 0
    # sha256 of each fetched file whose entry had none, by path (fills in manifests
    # synthesised from a listing; the others' are in the manifest already, and a
    # copy per file was 15 MB of a 100,000-file revision's peak).
    digests: dict[str, str] = field(default_factory=dict)
    # Each reused (linked) file's identity (verified.identity) as it was while its
    # bytes were hashed, by path: the verification record may bind the sha256 to this
    # and nothing later. The identity, not the whole stat result (640 bytes a file).
    reused: dict[str, tuple[str, tuple[int, int, int]]] = field(default_factory=dict)


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

    def fetched(self, entry: FileEntry, digest: str, resumed: int = 0) -> None:
        with self._lock:
            self.stats.files_fetched += 1
            self.stats.bytes_fetched += entry.size - resumed
            self.stats.bytes_resumed += resumed
            if not entry.sha256:
                self.stats.digests[entry.path] = digest

    def linked(
        self, size: int, path: str | None = None, seen: os.stat_result | None = None
    ) -> None:
        with self._lock:
            if path is not None and seen is not None:
                self.stats.reused[path] = identity(seen)
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


def _reuse(existing: Path, dest: Path, entry: FileEntry) -> os.stat_result | None:
    """Link ``existing`` (a retained or kept file with ``entry``'s sha256) to ``dest``
    and hash it there; its identity while hashed, or None (``dest`` removed) when the
    bytes differ or changed during the hash.

    A retained file sits where a server can write. So the bytes are hashed after the
    link, through the linked name, with fstat before and after: a write before or
    during the hash shows as other bytes or a moved ctime, and the identity returned
    is one under which these exact bytes were read (a write after it moves ctime, so
    a record made from it no longer matches). A link (symlink) is never followed."""
    _link_or_copy(existing, dest)
    try:
        fd = os.open(dest, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        dest.unlink(missing_ok=True)
        return None
    with contextlib.closing(os.fdopen(fd, "rb")) as handle:
        before = os.fstat(fd)
        digest, size = hashlib.sha256(), 0
        if stat.S_ISREG(before.st_mode):
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        after = os.fstat(fd)
    unchanged = identity(before) == identity(after)
    if (
        stat.S_ISREG(before.st_mode)
        and unchanged
        and (size, digest.hexdigest())
        == (
            entry.size,
            entry.sha256,
        )
    ):
        return after
    dest.unlink(missing_ok=True)
    return None


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
    small_concurrency: int = SMALL_CONCURRENCY,
) -> TransferStats:
    """Fill ``staging`` with every file of ``manifest``, verified; raise on the first failure.

    ``concurrency`` bounds the large files in flight (each may run its own ranged
    reads); ``small_concurrency`` the files in flight overall, so that many small
    files keep enough requests open to hide each one's latency.

    With ``partial``, a file below 1 MiB (never read as ranges) is written straight
    into ``staging`` and, once verified, linked into the kept downloads (so a pass cut
    later does not fetch it again); a larger one is fetched there (the ranges of a
    ranged one survive an interruption) and linked into ``staging`` once verified.
    """
    log = structlog.get_logger().bind(version=manifest.version)
    counter = _Counter(on_bytes)
    local = cancel.child()
    label = f"{source.url}/{manifest.version}"
    ordered, twins = _unique(manifest)
    dests = _prepare(staging, manifest, partial)
    large_slots = threading.BoundedSemaphore(concurrency)

    def one(entry: FileEntry) -> tuple[FileEntry, Path, bool]:
        local.check()
        dest = dests[entry.path]
        try:
            existing = reuse.get(entry.sha256)
            if existing is not None:
                seen = _reuse(existing, dest, entry)
                if seen is not None:
                    counter.linked(entry.size, entry.path, seen)
                    return entry, dest, False
                log.warning("a retained file changed on disk; fetching it", file=str(existing))
        except OSError as exc:
            raise store_error("write", dest, exc) from exc
        # Below MIN_RANGE_THRESHOLD no backend reads ranges, so a kept part could never
        # be resumed: the file goes straight to its place (one open, write, fsync).
        keep = partial is not None and bool(entry.sha256) and entry.size >= MIN_RANGE_THRESHOLD
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
        if partial is not None and entry.sha256 and not keep:
            partial.keep(entry.sha256, dest)
        counter.fetched(entry, digest, resumed)
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
                _link_or_copy(dest, dests[twin.path])
                counter.linked(twin.size)
        except OSError as exc:
            raise store_error("write", dest, exc) from exc

    def run(entry: FileEntry) -> tuple[FileEntry, Path, bool]:
        if entry.size < MIN_RANGE_THRESHOLD:
            return one(entry)
        with large_slots:
            return one(entry)

    Workers(run, ordered, max(concurrency, small_concurrency), local).drain(finish)
    return counter.stats


def _unique(manifest: Manifest) -> tuple[list[FileEntry], dict[str, list[FileEntry]]]:
    """The entries to fetch, largest first, and the twins of each: entries with the
    same content are fetched once and linked (and must be: two fetches would share
    one kept partial file)."""
    ordered: list[FileEntry] = []
    twins: dict[str, list[FileEntry]] = {}
    for entry in sorted(manifest.files, key=lambda e: e.size, reverse=True):
        if entry.sha256 and entry.sha256 in twins:
            twins[entry.sha256].append(entry)
            continue
        if entry.sha256:
            twins[entry.sha256] = []
        ordered.append(entry)
    return ordered, twins


def _prepare(
    staging: Path, manifest: Manifest, partial: PartialDownloads | None
) -> dict[str, Path]:
    """Where each file goes, every directory made once here rather than tried per
    file (two mkdirs per file, both failing with EEXIST, were 2,000 of the syscalls of
    1,000 small files)."""
    join = _Joiner(staging)
    dests = {entry.path: join(entry.path) for entry in manifest.files}
    parents = {path.parent for path in dests.values()}
    for parent in sorted(parents, key=lambda p: len(p.parts)):
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_error("write", parent, exc) from exc
    if partial is not None:
        partial.prepare()
    return dests


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
            # A kept partial download stays for the next pass (its journal says what
            # is complete; each kept range is checked again before it is used), unless
            # the store's checksum of the whole object failed: some kept range holds
            # damage its own crc vouches for, and resuming would keep it forever.
            if self.journal is None or isinstance(exc, IntegrityError):
                self._drop()
            raise
        if sink.written != entry.size:
            self._drop()
            return "", f"{label}: got {sink.written} bytes, manifest says {entry.size}", 0
        if entry.sha256 and digest != entry.sha256:
            self._drop()
            return "", f"{label}: sha256 {digest[:12]}… does not match the manifest", 0
        if not entry.sha256 and sink.vouched_by is None:
            # No manifest and no storage checksum compared: nothing verified these
            # bytes, so they are not admitted, whatever the reason (a store that keeps
            # none, an object stored compressed or encrypted, an answer that said so).
            # Not a refusal: the answer may have lied, and the revision is passed over.
            self._drop()
            raise IntegrityError(
                f"{label}: no checksum verified these bytes (the store's answer carried "
                "none that covers the whole object, and the revision has no manifest); "
                "not served: publish it with a manifest (`modelsync publish`) or store "
                "its objects with a checksum"
            )
        return digest, None, sink.resumed

    def _drop(self) -> None:
        """Forget what arrived: the file, and the journal that vouched for its ranges."""
        for path in (self.dest, self.journal.path if self.journal else None):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
