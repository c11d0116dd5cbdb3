"""Download one revision into staging: parallel, bounded, verified, deduplicated.

Files whose sha256 is already on local disk (in a retained revision) are hard-linked
instead of fetched, once their bytes are checked again. Every fetched file is
bounded to its declared size while it streams and checked against its sha256 when
complete; the first failure cancels the remaining downloads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from modelsync.cancel import CancelToken
from modelsync.errors import IntegrityError, RefusedError
from modelsync.fsutil import store_error
from modelsync.manifest import FileEntry, Manifest, hash_file
from modelsync.retry import RetryPolicy, call_with_retry
from modelsync.sources.base import OversizeError, Sink, Source

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
    # sha256 of every file fetched, by path (fills in manifests synthesised from a listing).
    digests: dict[str, str] = field(default_factory=dict)


def safe_join(root: Path, relpath: str) -> Path:
    """``root/relpath``, refusing anything that would land outside ``root``."""
    path = (root / relpath).resolve()
    if root.resolve() not in path.parents:
        raise RefusedError(f"{relpath!r} would be written outside the staging directory")
    return path


class _Counter:
    def __init__(self, on_bytes: Callable[[int], None] | None) -> None:
        self._lock = threading.Lock()
        self._on_bytes = on_bytes
        self.stats = TransferStats()

    def fetched(self, path: str, size: int, digest: str) -> None:
        with self._lock:
            self.stats.files_fetched += 1
            self.stats.bytes_fetched += size
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
) -> TransferStats:
    """Fill ``staging`` with every file of ``manifest``, verified; raise on the first failure."""
    log = structlog.get_logger().bind(version=manifest.version)
    counter = _Counter(on_bytes)
    local = cancel.child()
    label = f"{source.url}/{manifest.version}"

    def one(entry: FileEntry) -> None:
        local.check()
        dest = safe_join(staging, entry.path)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            existing = reuse.get(entry.sha256)
            # A retained file may have been changed on disk since it was verified (a
            # server can write where it reads): its bytes are checked before reuse.
            if existing is not None and hash_file(existing) == (entry.size, entry.sha256):
                _link_or_copy(existing, dest)
                counter.linked(entry.size)
                return
            if existing is not None:
                log.warning("a retained file changed on disk; fetching it", file=str(existing))
        except OSError as exc:
            raise store_error("write", dest, exc) from exc
        fetch = _Fetch(
            source,
            manifest.version,
            entry,
            dest,
            f"{label}/{entry.path}",
            local,
            retry,
            log,
            on_bytes,
        )
        digest = fetch.verified()
        counter.fetched(entry.path, entry.size, digest)

    ordered = sorted(manifest.files, key=lambda e: e.size, reverse=True)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch") as pool:
        futures = [pool.submit(one, entry) for entry in ordered]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            local.stop_event.set()
            wait(futures)
            # Report the first real failure, not the Cancelled it caused in the others.
            errors = [f.exception() for f in futures if f.exception() is not None]
            primary = next((e for e in errors if not local.caused(e)), errors[0])
            assert primary is not None
            raise primary
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

    def verified(self) -> str:
        """Fetch, check size, and sha256 unless the entry has none (a listing-derived
        entry, whose integrity is the storage checksum); return the sha256.

        Bytes that differ from the manifest are fetched again: the revision is refused
        only when two fetches bring the same wrong bytes (the stored object is wrong);
        different wrong bytes each time are damage in transit (IntegrityError: the
        pass fails and is retried, the revision is not refused).
        """
        outcomes: set[str] = set()
        for _ in range(_CONTENT_ATTEMPTS):
            digest, problem = self._once()
            if problem is None:
                return digest
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

    def _once(self) -> tuple[str, str | None]:
        """(sha256, None) for a file that matches its entry; ('', what was wrong)
        otherwise, with ``dest`` removed."""
        entry, dest, label = self.entry, self.dest, self.label
        try:
            sink = Sink(dest, entry.size, label, self.on_bytes)
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
            with contextlib.suppress(OSError):
                dest.unlink()
            if isinstance(exc, OversizeError):
                return "", f"{exc} (sha256 of what arrived {exc.received[:12]}…)"
            raise
        if sink.written != entry.size:
            dest.unlink()
            return "", f"{label}: got {sink.written} bytes, manifest says {entry.size}"
        if entry.sha256 and digest != entry.sha256:
            dest.unlink()
            return "", f"{label}: sha256 {digest[:12]}… does not match the manifest"
        return digest, None
