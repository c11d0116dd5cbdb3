"""The pass context: what one pass of one model works on, and the bookkeeping it owns.

Every step of a pass receives the context and records through it (refuse a
revision, record an error, settle an idle pass); no step is handed a callback into
another, so following a refusal means reading one method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import ModelsyncError
from modelsync.oneline import one_line
from modelsync.outcome import Outcome, PassResult
from modelsync.retry import RetryPolicy
from modelsync.state import ModelState
from modelsync.store import ModelStore

__all__ = ["PassContext"]


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
    # (an object missing or forbidden, damage on every fetch), with the error: passed
    # over for an older one this pass, not refused, tried again the next.
    deferred: dict[int, str] = field(default_factory=dict)
    # Whether one of them already failed on errors retried until the policy gave up:
    # a second such failure says the store, not one revision, is failing.
    _gave_up: bool = field(default=False, init=False, repr=False)
    # The first of those errors: what the pass fails with when nothing stands in.
    deferred_error: ModelsyncError | None = field(default=None, init=False, repr=False)

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

    def defer(self, version: int, error: ModelsyncError) -> None:
        """Pass ``version`` over for this pass: it could not be read or fetched, for a
        reason that says nothing for good about it (it may be mid-upload, or the store
        may be briefly at fault), so it is not refused and the next pass tries it
        again; an older revision may stand in meanwhile. Raises ``error`` again when
        the pass should end instead: the second revision of a pass whose retries all
        failed (the store is failing; walking down every version would only repeat it).
        """
        if error.retryable:
            if self._gave_up:
                raise error
            self._gave_up = True
        reason = one_line(str(error))
        if self.deferred_error is None:
            self.deferred_error = error
        self.deferred[version] = reason
        self.result.deferred[version] = reason
        # The daemon asks again soon (with backoff), not after a whole interval.
        self.result.retry_soon = True
        if self.result.error is None:
            self.result.error = f"version {version} could not be fetched: {reason}"
        self.log.bind(version=version).warning(
            "a newer revision could not be fetched; not refused, tried again next pass",
            error=reason,
        )

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
