"""Bring one chosen revision into staging: downloaded, verified, described.

What an interrupted download kept is resumed (partial.py); files already on local
disk are linked (transfer.py). Every staged file was verified on its way in, and
that verification is recorded (modelsync.verified) so admission, right after,
need not hash the bytes again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from modelsync.errors import NoSpaceError, RefusedError, StoreError
from modelsync.fsutil import atomic_write_bytes
from modelsync.manifest import MANIFEST_NAME, PATH_MAX, SIGNATURE_NAME, FileEntry, Manifest
from modelsync.oms import OMS_NAME
from modelsync.sources import Source
from modelsync.sync.context import PassContext
from modelsync.sync.policy.candidate import Candidate
from modelsync.transfer import TransferStats, download_revision
from modelsync.verified import VerifiedFiles, identity

__all__ = ["ProgressFactory", "fetch"]

# (model, version, total bytes) -> a context manager whose value takes byte counts.
ProgressFactory = Callable[[str, int, int], AbstractContextManager[Callable[[int], None]]]
# Free space kept beyond the download itself (see _check_space).
_SPACE_MARGIN_BYTES = 64 * 1024 * 1024
_SPACE_MARGIN_RATIO = 0.05


def fetch(
    ctx: PassContext,
    source: Source,
    candidate: Candidate,
    progress: ProgressFactory | None,
    verified: VerifiedFiles,
) -> Path:
    """Download ``candidate`` into a new staging directory and return it; what was
    verified on the way in is recorded in ``verified`` (saved by admission)."""
    model, ms, result = ctx.model, ctx.ms, ctx.result
    log = ctx.log.bind(version=candidate.version)
    manifest = candidate.manifest
    # What an interrupted download kept is resumed only for this revision's files.
    stale = ms.partial.keep_only({e.sha256 for e in manifest.files if e.sha256})
    if stale:
        log.info("removed partial downloads no revision wants", entries=stale)
    reuse = {**ms.partial.complete(), **ms.reuse_index()}
    missing = {e.sha256: e.size for e in manifest.files if e.sha256 not in reuse}
    to_fetch = sum(e.size for e in manifest.files if e.sha256 not in reuse)
    to_fetch -= ms.partial.kept_bytes(missing)
    staged = ms.new_staging(candidate.version)
    what = f"model {model.name} version {candidate.version}"
    _check_paths(staged, manifest, what)
    _check_space(staged, to_fetch, what)
    log.info(
        "downloading", files=len(manifest.files), bytes=manifest.total_size, bytes_to_fetch=to_fetch
    )
    bar: AbstractContextManager[Callable[[int], None] | None] = (
        progress(model.name, candidate.version, manifest.total_size)
        if progress
        else nullcontext(None)
    )
    started = time.monotonic()
    try:
        with bar as on_bytes:
            result.stats = download_revision(
                source,
                manifest,
                staged,
                reuse,
                concurrency=model.concurrency,
                small_concurrency=model.small_concurrency,
                cancel=ctx.cancel,
                retry=ctx.retry,
                on_bytes=on_bytes,
                partial=ms.partial,
            )
    except BaseException:
        # Freed now, not when the pass ends: an older revision may be fetched next in
        # this pass (sync/bring.py), and its space check must not count these bytes.
        shutil.rmtree(staged, ignore_errors=True)
        raise
    seconds = time.monotonic() - started
    ms.partial.keep_only(())  # every file is linked into the staged tree now
    files = _verified_entries(candidate, result.stats)
    _record(verified, staged, files, result.stats)
    raw = candidate.manifest_bytes
    if raw is None:
        # Record what was fetched, so the revision verifies and shares files later.
        raw = dataclasses.replace(manifest, files=files).to_bytes()
    if candidate.signature is not None:
        atomic_write_bytes(staged / SIGNATURE_NAME, candidate.signature)
    if candidate.oms_bundle is not None:
        atomic_write_bytes(staged / OMS_NAME, candidate.oms_bundle)
    atomic_write_bytes(staged / MANIFEST_NAME, raw)
    log.info(
        "downloaded and verified",
        fetched_files=result.stats.files_fetched,
        fetched_bytes=result.stats.bytes_fetched,
        resumed_bytes=result.stats.bytes_resumed,
        linked_files=result.stats.files_linked,
        seconds=round(seconds, 3),
        mb_per_s=round(manifest.total_size / 1e6 / max(seconds, 1e-6), 1),
    )
    return staged


def _verified_entries(candidate: Candidate, stats: TransferStats) -> tuple[FileEntry, ...]:
    """The manifest's entries with the sha256 each staged file was verified as (a
    listing-described revision learns them from the download)."""
    return tuple(
        e if e.sha256 else FileEntry(e.path, e.size, stats.digests[e.path])
        for e in candidate.manifest.files
    )


def _record(
    verified: VerifiedFiles, staged: Path, files: tuple[FileEntry, ...], stats: TransferStats
) -> None:
    """transfer.py verified every staged file on its way in; record that against each
    file's identity. A fetched file is a new inode in modelsync's own directories,
    hashed as it streamed: its identity now (after the links that kept it) is the
    one its bytes were written under. A reused file is shared with a retained
    revision, where a server may write: only the identity seen while it was hashed
    is recorded, and only if the file still has it (else admission hashes it)."""
    # By inode: an entry with the same bytes as a reused file was linked to it (a twin)
    # and is that file, under the same rule.
    reused = dict(stats.reused.values())
    for entry in files:
        try:
            st = os.lstat(staged / entry.path)
        except OSError as exc:
            raise StoreError(f"cannot stat {staged / entry.path}: {exc.strerror}") from exc
        key, now = identity(st)
        if key not in reused or reused[key] == now:
            verified.record(st, entry.sha256)


def _check_paths(staged: Path, manifest: Manifest, what: str) -> None:
    """Refuse a revision whose longest path, joined under ``staged``, would not fit
    PATH_MAX bytes: creating it would fail with ENAMETOOLONG on every pass. The
    manifest check bounds each path (manifest.MAX_PATH_BYTES); this is the same limit
    where the kernel applies it, counted before any directory is made."""
    base = len(os.fsencode(staged)) + 1
    longest = max((len(e.path.encode()) for e in manifest.files), default=0)
    if base + longest >= PATH_MAX:
        raise RefusedError(
            f"{what}: a file path of {longest} bytes under {staged.parent} would exceed "
            f"PATH_MAX ({PATH_MAX} bytes)"
        )


def _check_space(staged: Path, needed: int, what: str) -> None:
    """Refuse to start a download that cannot fit, keeping a margin for the rest of the
    host: 5 % of the download, and at least 64 MiB (or 5 % of a smaller filesystem).

    A revision larger than the whole volume can never fit: it is refused, so it
    cannot fail every pass and hold back the revisions published after it."""
    usage = shutil.disk_usage(staged)
    free = usage.free
    floor = min(_SPACE_MARGIN_BYTES, int(usage.total * _SPACE_MARGIN_RATIO))
    margin = max(floor, int(needed * _SPACE_MARGIN_RATIO))
    if needed > usage.total:
        raise RefusedError(
            f"{what}: needs {needed} bytes, more than the whole volume at {staged.parent} "
            f"({usage.total} bytes)"
        )
    if needed + margin > free:
        # Not refused: space may free up. Charged to this revision (sync.charge), so
        # an older, smaller one may stand in meanwhile.
        raise NoSpaceError(
            f"{what}: needs {needed} bytes plus a {margin}-byte margin, only {free} free "
            f"at {staged.parent}"
        )
