"""One sync pass for one model, as named steps ending in an Outcome.

    prepare (layout, foreign entries, an interrupted activation) → re-confirm the
    active revision → choose (policy/) → the chosen tree (bring.py: a retained copy,
    or fetched into staging by fetch.py and validated; an older one standing in for a
    revision that cannot be brought in) → admit (admit.py: the one door into the
    served tree) → activate, notify, confirm, commit — or roll back (activation.py)

The pass re-derives everything from disk (``current``, the journal in the state
file), so running it again after a crash finishes or undoes the interrupted one.
The envelope (lock, context, staging cleanup, error recording) is written once, in
``_envelope``, for the pass and for a manual rollback alike; every step raises and
only the envelope records.

How to see that nothing reaches the served tree unadmitted: ``ModelStore.activate``
and ``ModelStore.resume`` are the only calls that put a revision there, both take
an ``Admitted``, and only ``admit`` makes one (tests/test_admit.py checks both).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import (
    Cancelled,
    EmptySourceError,
    ModelsyncError,
    RefusedError,
    StoreError,
)
from modelsync.oneline import one_line
from modelsync.outcome import Outcome, PassResult
from modelsync.retry import RetryPolicy
from modelsync.sources import Connections, Source, SourceFactory, open_source
from modelsync.state import Waiting
from modelsync.store import ModelStore
from modelsync.sync import activation, manual
from modelsync.sync.admit import admit
from modelsync.sync.bring import bring_in, stood_in
from modelsync.sync.context import PassContext
from modelsync.sync.fetch import ProgressFactory
from modelsync.sync.policy import Choice, Policy
from modelsync.sync.policy.newest import Newest
from modelsync.sync.policy.registry import Named, RegistryPolicy
from modelsync.volume import Store

if TYPE_CHECKING:
    from modelsync.metricsread import Totals
    from modelsync.sync.policy.follow import Follow, Follower

__all__ = ["Outcome", "PassResult", "ProgressFactory", "Syncer"]

Log = structlog.typing.FilteringBoundLogger


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
        self._sources_lock = threading.Lock()
        self._identity = identity
        self._newest = Newest()
        self._channel_policy: tuple[Follower, Follow] | None = None
        self._registry = RegistryPolicy()

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

    # Release channels and reports (models with ``channel`` / ``report``) are built at
    # first use: most models follow the newest version, and a one-shot sync of one
    # should not import the pointer schemas, trust and halt rules at start-up.
    # Under the lock: passes of several models run in threads, and one follower
    # holds the host's view of every channel.
    def _channels(self) -> tuple[Follower, Follow]:
        from modelsync.channel import default_identity
        from modelsync.sync.policy.follow import Follow, Follower

        with self._sources_lock:
            if self._channel_policy is None:
                follower = Follower(self._identity or default_identity(), self.retry)
                self._channel_policy = (follower, Follow(follower))
            return self._channel_policy

    @property
    def follower(self) -> Follower:
        return self._channels()[0]

    def _policy(self, model: ModelConfig, source: Source) -> Policy:
        if model.channel is not None:
            return self._channels()[1]
        # A registry (MLflow) names the version: followed wherever it moves.
        return self._registry if isinstance(source, Named) else self._newest

    # -- the envelope ----------------------------------------------------------

    def _envelope(
        self,
        model: ModelConfig,
        cancel: CancelToken,
        body: Callable[[PassContext], None],
        *,
        contain: bool = True,
    ) -> PassResult:
        """Lock the model, build the pass's context, run ``body``; whatever happens,
        clean staging and record a failure in the result and the state. ``contain``:
        a failure is the result's (a pass); else it is raised again (a command)."""
        log: Log = structlog.get_logger().bind(model=model.name)
        ms = self.store.model(model.name, model.layout)
        result = PassResult(model.name, Outcome.FAILED, None)
        started = time.monotonic()
        ctx: PassContext | None = None
        try:
            self.store.prepare()
            with ms.lock(cancel):
                try:
                    ctx = PassContext(
                        model, ms, ms.load_state(), cancel, result, log, self._wall, self.retry
                    )
                    body(ctx)
                finally:
                    if ctx is not None:
                        result.rollback_failed = ctx.state.rollback_failed
                    ms.clean_staging()
        except Cancelled as exc:
            result.outcome, result.error = Outcome.FAILED, f"cancelled: {exc}"
            log.warning("sync cancelled", version=result.candidate, reason=str(exc))
            if not contain:
                raise
        except ModelsyncError as exc:
            # The message may quote a bucket or a server at any length: one bounded line.
            text = one_line(str(exc))
            result.outcome, result.error = Outcome.FAILED, text
            # An empty source may be a typo or a first revision on its way: a warning.
            level = log.warning if isinstance(exc, EmptySourceError) else log.error
            level("sync failed", version=result.candidate, error=text)
            if ctx is not None:
                ctx.record_error(text)
            if not contain:
                raise
        except Exception as exc:
            # A bug or an input nobody foresaw: this pass fails (counted, retried with
            # backoff), the worker and every other model go on.
            result.outcome = Outcome.FAILED
            result.error = one_line(f"unexpected {type(exc).__name__}: {exc}")
            log.exception("pass crashed; counted as failed", version=result.candidate)
            if ctx is not None:
                ctx.record_error(result.error)
            if not contain:
                raise
        result.active = _safe_active(ms)
        result.duration = time.monotonic() - started
        return result

    # -- the pass --------------------------------------------------------------

    def sync(self, model: ModelConfig, cancel: CancelToken) -> PassResult:
        """One pass for ``model``. Never raises for a sync failure: see the result."""
        refused: dict[int, str] = {}

        def body(ctx: PassContext) -> None:
            try:
                self._run(ctx)
            finally:
                refused.update(ctx.state.refused)

        result = self._envelope(model, cancel, body)
        if model.report:
            # Imported for a reporting model only: the report schemas and their writer.
            from modelsync.sync.report import report_pass

            report_pass(
                self._source(model),
                result,
                refused,
                self.follower.identity,
                self._wall,
                result.channel,
            )
        return result

    def _run(self, ctx: PassContext) -> None:
        self._prepare(ctx)
        reachable = activation.reconfirm(ctx)
        if not reachable and ctx.result.unreachable is None:
            return  # the pass ended in there (a rollback)
        if reachable and ctx.model.bake is not None:
            # Imported for a model that bakes only: the scrape, journal and judge.
            from modelsync.sync import bake

            if bake.step(ctx):
                return  # baking (the model holds until the verdict), or rolled back by it
        active = ctx.ms.active_version()
        if ctx.state.pinned is not None:
            ctx.log.debug("pinned; not looking for new revisions", pinned=ctx.state.pinned)
            ctx.ms.partial.keep_only(())
            ctx.result.outcome = Outcome.UNCHANGED
            return
        source = self._source(ctx.model)
        policy = self._policy(ctx.model, source)
        choice = policy.choose(ctx, source, active)
        if not reachable:
            self._wait(ctx, choice)
            return
        if ctx.state.waiting is not None:
            ctx.state.waiting = None
            ctx.ms.save_state(ctx.state)
        if choice is None and ctx.deferred_error is not None:
            # Every newer version was passed over and none stands in: the pass failed
            # (the store as it was), with the first reason.
            ctx.keep_deferrals()
            raise ctx.deferred_error
        if choice is None:
            ctx.settle_unchanged()
            ctx.log.debug("up to date", version=active)
            return
        admitted = bring_in(ctx, source, policy, choice, active, self._progress)
        if admitted is None:
            ctx.settle_unchanged()
            return
        before: Totals | None = None
        if ctx.model.bake is not None:
            from modelsync.sync import bake

            before = bake.before_swap(ctx)
        ctx.result.outcome = activation.activate(ctx, admitted)
        if ctx.result.outcome is Outcome.ACTIVATED and ctx.model.bake is not None:
            from modelsync.sync import bake

            bake.start(ctx, active, before)
        if ctx.deferred:
            stood_in(ctx)

    def _wait(self, ctx: PassContext, choice: Choice | None) -> None:
        """The server does not answer: a newer revision found is not brought in (the
        active one is kept), but it is said — in the result, the state and the log."""
        state, since = ctx.state, ctx.wall()
        if choice is None:
            if state.waiting is not None:
                state.waiting = None
                ctx.ms.save_state(state)
            return
        if state.waiting is not None and state.waiting.version == choice.version:
            since = state.waiting.since
        reason = f"server unreachable: {ctx.result.unreachable}"
        if state.waiting != Waiting(choice.version, reason, since):
            state.waiting = Waiting(choice.version, reason, since)
            ctx.ms.save_state(state)
        ctx.result.waiting = choice.version
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
        ctx.result.error = f"version {choice.version} waits: server unreachable since {stamp}"
        ctx.log.warning(
            "a newer revision waits for the server",
            version=choice.version,
            since=stamp,
            reason=ctx.result.unreachable,
        )

    def _prepare(self, ctx: PassContext) -> None:
        """Bring the disk in line before anything is chosen: the pointer where the
        layout wants it, nothing foreign in the served tree, an interrupted activation
        finished (if its tree is still admissible) or undone."""
        ms, state, log = ctx.ms, ctx.state, ctx.log
        ms.align_layout()
        for moved in ms.evict_foreign(state):
            log.warning("moved a foreign entry out of the served tree", moved_to=str(moved))
        pending = state.pending
        if pending is None:
            return
        if pending.phase == "activating":
            tree = ms.dir / str(pending.version)
            try:
                admitted = admit(
                    ctx, pending.version, tree, "crash recovery", journalled=pending.manifest_sha256
                )
            except RefusedError as exc:
                log.warning("an interrupted activation is undone", reason=str(exc))
                ms.abandon(state)
                return
            ms.resume(admitted, state)
        else:
            ms.rollback(state)
        log.warning(
            "finishing an interrupted activation", version=pending.version, phase=pending.phase
        )
        activation.finish(ctx)

    # -- manual rollback -------------------------------------------------------------

    def rollback_to(
        self, model: ModelConfig, version: int | None, cancel: CancelToken
    ) -> PassResult:
        """Activate a retained older revision by hand and pin the model to it; raise
        (one line) when it cannot be done, with the store as it was."""
        return self._envelope(
            model, cancel, functools.partial(self._rollback, version=version), contain=False
        )

    def _rollback(self, ctx: PassContext, *, version: int | None) -> None:
        self._prepare(ctx)
        manual.roll_back(ctx, version)

    def unpin(self, model: ModelConfig) -> int | None:
        """Let the model follow new revisions again; return the pin that was removed."""
        ms = self.store.model(model.name, model.layout)
        with ms.lock(CancelToken(deadline=time.monotonic() + 60)):
            state = ms.load_state()
            pinned, state.pinned = state.pinned, None
            ms.save_state(state)
        return pinned


def _safe_active(ms: ModelStore) -> int | None:
    try:
        return ms.active_version()
    except StoreError:
        return None
