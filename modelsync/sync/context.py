"""The pass context: what one pass of one model works on, and the bookkeeping it owns.

Every step of a pass receives the context and records through it (refuse a
revision, record an error, settle an idle pass); no step is handed a callback into
another, so following a refusal means reading one method.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import ModelsyncError
from modelsync.oneline import one_line
from modelsync.outcome import Outcome, PassResult
from modelsync.retry import RetryPolicy, call_with_retry
from modelsync.sources import Source
from modelsync.state import DEFERRED_REASON_CHARS, Deferrals, ModelState
from modelsync.store import ModelStore

__all__ = ["DEFER_RETRY_AFTER", "PassContext"]

# How long versions an earlier pass could not fetch are skipped (all but the newest,
# tried every pass) once no pass adds to them: then they are all tried again, so a
# version in the middle that was fixed is brought in within the hour.
DEFER_RETRY_AFTER = 3600.0


@dataclass
class PassContext:
    """Built once when a pass takes the model's lock; lives as long as the pass."""

    model: ModelConfig
    ms: ModelStore
    state: ModelState
    cancel: CancelToken
    result: PassResult
    log: structlog.typing.FilteringBoundLogger
    wall: Callable[[], float]
    retry: RetryPolicy
    # Versions this pass could not read or fetch for a reason that is not a refusal
    # (an object missing or forbidden, a download that does not fit now), with the
    # reason: passed over for an older one, not refused (modelsync.sync.charge).
    deferred: dict[int, str] = field(default_factory=dict)
    # The versions the pass listed (the newest policy lists once per pass; a walk down
    # past deferred versions reads this, not the bucket again).
    listing: list[int] | None = None
    # Whether a version of this pass already failed on the local store (charge.py).
    store_failed: bool = False
    # The first of the deferrals' errors: what the pass fails with when nothing stands in.
    deferred_error: Exception | None = field(default=None, init=False, repr=False)
    # When the remembered deferrals were last saved (wall clock), and whether some
    # were added since.
    _deferrals_saved_at: float = field(default=0.0, init=False, repr=False)
    _deferrals_dirty: bool = field(default=False, init=False, repr=False)

    def refuse(self, version: int, reason: str, metrics: dict[str, float] | None = None) -> None:
        """Record ``version`` as refused for good, with the reason (and its manifest's
        metrics, for the status page). The pass itself goes on: a refusal is the pass
        doing its work, not a failure of it."""
        state = self.state
        # The reason may quote the bucket at any length: one bounded line from here on,
        # in the state, the log and the line a one-shot `sync` prints.
        reason = one_line(reason)
        state.record_refused(version, reason, metrics)
        state.last_error, state.last_error_at = reason, self.wall()
        state.record(self.wall(), "refused", version, reason=reason)
        self.ms.save_state(state)
        if version not in self.result.refused:
            self.result.refused.append(version)
        if self.result.error is None:
            self.result.error = reason  # what a one-shot `sync` prints
        self.log.bind(version=version).error("revision refused", reason=reason)

    def list_versions(self, source: Source) -> list[int]:
        """The source's versions, read with the pass's retries, deadline and log."""
        return call_with_retry(
            functools.partial(source.list_versions, cancel=self.cancel),
            self.retry,
            self.cancel,
            f"{source.url}: list",
            self.log,
        )

    def passed_over(self, version: int) -> bool:
        """Whether an earlier pass deferred ``version`` and it waits for its retry time
        (state.Deferrals); the newest deferred one is tried every pass, so a fix to
        it is picked up on the next pass."""
        known = self.state.deferrals
        return (
            known is not None
            and self.wall() < known.retry_at
            and known.floor <= version < known.newest
        )

    def defer(self, version: int, error: Exception) -> None:
        """Pass ``version`` over: it could not be read, fetched, staged or validated for
        a reason that says nothing for good about it (it may be mid-upload, or space
        may free up), so it is not refused; an older revision may stand in meanwhile.
        Remembered across passes (state.Deferrals) so that the next pass goes on below
        it rather than walking the same versions again. Only charge.py calls this: it
        has decided the failure is this revision's, not the store's."""
        if isinstance(error, ModelsyncError):
            reason = str(error)
        else:
            # Not one of ours: a bug or an input nobody foresaw. Charged to the
            # revision like any other failure, but with its traceback in the log.
            reason = f"unexpected {type(error).__name__}: {error}"
        reason = one_line(reason, DEFERRED_REASON_CHARS)
        if self.deferred_error is None:
            self.deferred_error = error
        self.deferred[version] = reason
        self.result.deferred[version] = reason
        # The daemon asks again soon (with backoff), not after a whole interval.
        self.result.retry_soon = True
        if self.result.error is None:
            self.result.error = f"version {version} could not be fetched: {reason}"
        self._remember(version, reason)
        self.log.bind(version=version).warning(
            "a newer revision could not be fetched; not refused, tried again later",
            error=reason,
            exc_info=None if isinstance(error, ModelsyncError) else error,
        )

    def _remember(self, version: int, reason: str) -> None:
        """Extend the remembered range to ``version``. The retry time moves on only when the range
        grows (a walk that goes on below it, or a newer version deferred), so a range
        no pass extends is walked again from the top after DEFER_RETRY_AFTER."""
        now, known = self.wall(), self.state.deferrals
        if known is None or now >= known.retry_at:
            known = Deferrals(version, version, reason, now + DEFER_RETRY_AFTER)
        elif version > known.newest or version < known.floor:
            known.newest, known.floor = max(known.newest, version), min(known.floor, version)
            known.retry_at = now + DEFER_RETRY_AFTER
        if version == known.newest:
            known.reason = reason
        self.state.deferrals = known
        self._deferrals_dirty = True
        # Saved at most once a second while a walk goes on (a save with its fsyncs
        # was a third of each deferral's cost): a pass cut by its deadline loses at
        # most that second of what it learnt.
        if now - self._deferrals_saved_at >= 1.0:
            self.keep_deferrals()

    def keep_deferrals(self) -> None:
        """Save the remembered deferrals if some are not saved yet (before a pass
        that deferred ends in failure: the failure's record reads the state back)."""
        if self._deferrals_dirty:
            self.ms.save_state(self.state)
            self._deferrals_saved_at, self._deferrals_dirty = self.wall(), False

    def settle_unchanged(self) -> None:
        """End a pass that found nothing to bring in: what it keeps is a success."""
        self.result.outcome = Outcome.UNCHANGED
        self.ms.partial.keep_only(())  # nothing is wanted: no download to resume
        if self.state.rollback_failed:
            return
        if not self.result.refused:
            self.state.last_error = None  # a refusal's reason stays visible until then
        self.state.last_success_at = self.wall()
        self.ms.save_state(self.state)

    def record_error(self, error: str) -> None:
        """Keep the error of a failed pass in the state (for status and readiness).

        Read back from disk first: the pass failed part-way, and what it held in
        memory may be a change it never meant to save."""
        try:
            state = self.ms.load_state()
            state.last_error, state.last_error_at = one_line(error), self.wall()
            self.ms.save_state(state)
        except Exception:  # noqa: S110 - the original error is what the operator needs
            pass
