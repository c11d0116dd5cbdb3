"""One sync pass for one model, as named steps ending in an Outcome.

re-confirm the active revision → discover → decide (discover.py) → download →
verify → validate → activate → notify → confirm → commit, or on a failed reload:
roll back → notify → confirm the previous → refuse or count (activation.py)

The pass re-derives everything from disk (``current``, the journal in the state
file), so running it again after a crash finishes or undoes the interrupted one.
Only ``Syncer.sync`` catches errors: every step raises, the pass records.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import structlog

from modelsync.activation import Activation
from modelsync.cancel import CancelToken
from modelsync.channel import default_identity
from modelsync.config import ModelConfig
from modelsync.discover import Candidate, Discovery
from modelsync.errors import Cancelled, ModelsyncError, RefusedError, ReloadError, StoreError
from modelsync.follow import Follower, channel_target, outcomes_of
from modelsync.fsutil import atomic_write_bytes
from modelsync.manifest import MANIFEST_NAME, SIGNATURE_NAME, FileEntry
from modelsync.outcome import Outcome, PassContext, PassResult
from modelsync.reports import write_report
from modelsync.retry import RetryPolicy
from modelsync.sources import Connections, Source, SourceFactory, open_source
from modelsync.store import ModelStore
from modelsync.transfer import download_revision
from modelsync.validate import validate_revision
from modelsync.volume import Store

__all__ = ["Outcome", "PassResult", "ProgressFactory", "Syncer"]

Log = structlog.typing.FilteringBoundLogger
# (model, version, total bytes) -> a context manager whose value takes byte counts.
ProgressFactory = Callable[[str, int, int], AbstractContextManager[Callable[[int], None]]]
# Free space kept beyond the download itself (see _check_space).
_SPACE_MARGIN_BYTES = 64 * 1024 * 1024
_SPACE_MARGIN_RATIO = 0.05


class Syncer:
    """Runs passes against one store. Safe to call from one thread per model."""

    def __init__(
        self,
        store: Store,
        *,
        retry: RetryPolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
        progress: ProgressFactory | None = None,
        sources: SourceFactory | None = None,
        identity: str | None = None,
    ) -> None:
        self.store = store
        # Sources of this syncer share clients (one per backend and options).
        self._connections = Connections()
        self._open_source = sources or functools.partial(open_source, connections=self._connections)
        self.retry = retry or RetryPolicy()
        self._wall = wall_clock
        self._progress = progress
        self._sources: dict[tuple[str, str], Source] = {}
        self._activation = Activation(wall_clock, self._refuse)
        self._sources_lock = threading.Lock()
        # Release channels and reports (models with ``channel`` / ``report``).
        self.follower = Follower(identity or default_identity(), self.retry)

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self._sources.clear()
        self._connections.close()

    def _source(self, model: ModelConfig) -> Source:
        # One source (one client, one connection pool) per URL and options.
        key = (model.source, json.dumps(model.source_options, sort_keys=True, default=str))
        with self._sources_lock:
            if key not in self._sources:
                self._sources[key] = self._open_source(model.source, model.source_options)
            return self._sources[key]

    # -- the pass --------------------------------------------------------------

    def sync(self, model: ModelConfig, cancel: CancelToken) -> PassResult:
        """One pass for ``model``. Never raises for a sync failure: see the result."""
        log: Log = structlog.get_logger().bind(model=model.name)
        ms = self.store.model(model.name, model.layout)
        started = time.monotonic()
        result = PassResult(model.name, Outcome.FAILED, None)
        refused: dict[int, str] = {}
        try:
            self.store.prepare()
            with ms.lock(cancel):
                try:
                    ctx = PassContext(model, ms, ms.load_state(), cancel, result, log)
                    try:
                        self._run(ctx)
                    finally:
                        result.rollback_failed = ctx.state.rollback_failed
                        refused = ctx.state.refused
                finally:
                    ms.clean_staging()
        except Cancelled as exc:
            result.outcome, result.error = Outcome.FAILED, f"cancelled: {exc}"
            log.warning("sync cancelled", version=result.candidate, reason=str(exc))
        except ModelsyncError as exc:
            result.outcome, result.error = Outcome.FAILED, str(exc)
            log.error("sync failed", version=result.candidate, error=str(exc))
            self._record_error(ms, str(exc))
        except Exception as exc:
            # A bug or an input nobody foresaw: this pass fails (counted, retried with
            # backoff), the worker and every other model go on.
            result.outcome = Outcome.FAILED
            result.error = f"unexpected {type(exc).__name__}: {exc}"[:500]
            log.exception("pass crashed; counted as failed", version=result.candidate)
            self._record_error(ms, result.error)
        result.active = _safe_active(ms)
        if model.report:
            self._report(model, result, refused)
        result.duration = time.monotonic() - started
        return result

    def _run(self, ctx: PassContext) -> None:
        ms, state, result, log = ctx.ms, ctx.state, ctx.result, ctx.log
        ms.align_layout()
        for moved in ms.evict_foreign():
            log.warning("moved a foreign entry out of the served tree", moved_to=str(moved))
        self._recover(ctx)
        if not self._activation.reconfirm(ctx):
            return
        active = ms.active_version()
        if state.pinned is not None:
            log.info("pinned; not looking for new revisions", version=active, pinned=state.pinned)
            ms.partial.keep_only(())
            result.outcome = Outcome.UNCHANGED
            return
        source = self._source(ctx.model)
        discovery = Discovery(
            self.retry,
            self._wall,
            lambda version, exc: self._refuse(ctx, version, str(exc), exc.metrics),
            log,
        )
        if ctx.model.channel is None:
            candidate = discovery.newest(ctx.model, source, active, state.refused, ctx.cancel)
        else:
            target = channel_target(self.follower, ctx, source, active)
            retained = ms.path_of(target) if target is not None else None
            if target is not None and retained is not None:
                # Back to a revision this host served before (a halted or aborted
                # canary): verified when it was downloaded, activated from the cache.
                result.candidate = target
                ms.activate(target, retained, active, state)
                log.info("activated", version=target, previous=active, channel=ctx.model.channel)
                result.outcome = self._activation.finish(ctx)
                return
            candidate = None
            if target is not None:
                try:
                    candidate = discovery.exact(ctx.model, source, target, ctx.cancel)
                except RefusedError as exc:
                    self._refuse(ctx, target, str(exc), exc.metrics)
                    raise
        if candidate is None:
            ms.partial.keep_only(())  # nothing is wanted: no download to resume
            result.outcome = Outcome.UNCHANGED
            log.debug("up to date", version=active)
            if not result.refused and not state.rollback_failed:
                state.last_error = None
                state.last_success_at = self._wall()
                ms.save_state(state)
            return
        result.candidate = candidate.version
        try:
            staged = self._download(ctx, source, candidate)
            validate_revision(staged, ctx.model, candidate.version, ctx.cancel)
        except RefusedError as exc:
            self._refuse(ctx, candidate.version, str(exc))
            raise
        ms.activate(candidate.version, staged, active, state)
        log.info("activated", version=candidate.version, previous=active)
        result.outcome = self._activation.finish(ctx)

    # -- steps -----------------------------------------------------------------

    def _report(self, model: ModelConfig, result: PassResult, refused: dict[int, str]) -> None:
        """Write this host's report on each version this pass settled (report = true)."""
        for version, outcome, reason in outcomes_of(result, refused):
            try:
                write_report(
                    self._source(model),
                    model.name,
                    version,
                    self.follower.identity,
                    outcome,
                    reason,
                    self._wall,
                    channel=result.channel,
                )
            except Exception as exc:  # the pass's outcome stands; say why
                structlog.get_logger().warning(
                    "could not write the report", model=model.name, version=version, error=str(exc)
                )

    def _recover(self, ctx: PassContext) -> None:
        """Finish an activation (or rollback) a crash interrupted: its tree is complete
        and verified, so the server is told and heard again."""
        pending = ctx.ms.recover(ctx.state)
        if pending is None:
            return
        ctx.log.warning(
            "finishing an interrupted activation", version=pending.version, phase=pending.phase
        )
        self._activation.finish(ctx)

    def _download(self, ctx: PassContext, source: Source, candidate: Candidate) -> Path:
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
        _check_space(staged, to_fetch, f"model {model.name} version {candidate.version}")
        log.info(
            "downloading",
            files=len(manifest.files),
            bytes=manifest.total_size,
            bytes_to_fetch=to_fetch,
        )
        progress = self._progress
        bar: AbstractContextManager[Callable[[int], None] | None] = (
            progress(model.name, candidate.version, manifest.total_size)
            if progress
            else nullcontext(None)
        )
        started = time.monotonic()
        with bar as on_bytes:
            result.stats = download_revision(
                source,
                manifest,
                staged,
                reuse,
                concurrency=model.concurrency,
                cancel=ctx.cancel,
                retry=self.retry,
                on_bytes=on_bytes,
                partial=ms.partial,
            )
        seconds = time.monotonic() - started
        ms.partial.keep_only(())  # every file is linked into the staged tree now
        raw = candidate.manifest_bytes
        if raw is None:
            # Record what was fetched, so the revision verifies and shares files later.
            files = tuple(
                FileEntry(e.path, e.size, result.stats.digests[e.path]) for e in manifest.files
            )
            raw = dataclasses.replace(manifest, files=files).to_bytes()
        if candidate.signature is not None:
            atomic_write_bytes(staged / SIGNATURE_NAME, candidate.signature)
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

    # -- manual rollback -------------------------------------------------------------

    def rollback_to(
        self, model: ModelConfig, version: int | None, cancel: CancelToken
    ) -> PassResult:
        """Activate a retained older revision by hand and pin the model to it."""
        log: Log = structlog.get_logger().bind(model=model.name)
        ms = self.store.model(model.name, model.layout)
        result = PassResult(model.name, Outcome.FAILED, None)
        with ms.lock(cancel):
            try:
                state = ms.load_state()
                ctx = PassContext(model, ms, state, cancel, result, log)
                self._recover(ctx)
                active = ms.active_version()
                if active is None:
                    raise StoreError(f"model {model.name} has no active version")
                retained = [v for v in ms.cached_versions() if v != active]
                if version is None:
                    older = [v for v in retained if v < active]
                    if not older:
                        raise StoreError(
                            f"model {model.name}: no retained revision older than "
                            f"{active}; retained: {retained}"
                        )
                    version = max(older)
                path = ms.path_of(version)
                if path is None or version == active:
                    raise StoreError(
                        f"model {model.name}: version {version} is not a retained "
                        f"revision; retained: {retained}"
                    )
                result.candidate = version
                vlog = log.bind(version=version)
                ms.activate(version, path, active, state, retire_to="cache")
                result.outcome = self._activation.finish(ctx)
                if result.outcome is not Outcome.ACTIVATED:
                    raise ReloadError(
                        f"the server did not confirm version {version}; "
                        f"version {active} was restored"
                    )
                state.pinned = version
                ms.save_state(state)
                vlog.warning("rolled back by hand; pinned until `modelsync unpin`", previous=active)
            finally:
                ms.clean_staging()
        result.active = _safe_active(ms)
        return result

    def unpin(self, model: ModelConfig) -> int | None:
        """Let the model follow new revisions again; return the pin that was removed."""
        ms = self.store.model(model.name, model.layout)
        with ms.lock(CancelToken(deadline=time.monotonic() + 60)):
            state = ms.load_state()
            pinned, state.pinned = state.pinned, None
            ms.save_state(state)
        return pinned

    # -- bookkeeping ------------------------------------------------------------

    def _refuse(
        self,
        ctx: PassContext,
        version: int,
        reason: str,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Record ``version`` as refused for good, with the reason (and its manifest's
        metrics, for the status page), and report it."""
        ctx.state.refused[version] = reason
        if metrics:
            ctx.state.refused_metrics[version] = dict(sorted(metrics.items())[:50])
            for old in [v for v in ctx.state.refused_metrics if v not in ctx.state.refused]:
                del ctx.state.refused_metrics[old]
        ctx.state.last_error, ctx.state.last_error_at = reason, self._wall()
        ctx.state.record(self._wall(), "refused", version, reason=reason)
        ctx.ms.save_state(ctx.state)
        ctx.result.refused.append(version)
        ctx.log.bind(version=version).error("revision refused", reason=reason)

    def _record_error(self, ms: ModelStore, error: str) -> None:
        try:
            state = ms.load_state()
            state.last_error, state.last_error_at = error, self._wall()
            ms.save_state(state)
        except Exception:  # noqa: S110 - the original error is what the operator needs
            pass


def _check_space(staged: Path, needed: int, what: str) -> None:
    """Refuse to start a download that cannot fit, keeping a margin for the rest of the
    host: 5 % of the download, and at least 64 MiB (or 5 % of a smaller filesystem)."""
    usage = shutil.disk_usage(staged)
    free = usage.free
    floor = min(_SPACE_MARGIN_BYTES, int(usage.total * _SPACE_MARGIN_RATIO))
    margin = max(floor, int(needed * _SPACE_MARGIN_RATIO))
    if needed + margin > free:
        raise StoreError(
            f"{what}: needs {needed} bytes plus a {margin}-byte margin, only {free} free "
            f"at {staged.parent}"
        )


def _safe_active(ms: ModelStore) -> int | None:
    try:
        return ms.active_version()
    except StoreError:
        return None
