"""The pass context: what one pass of one model works on, and the bookkeeping it owns.

Every step of a pass receives the context and records through it (refuse a
revision, record an error, settle an idle pass); no step is handed a callback into
another, so following a refusal means reading one method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.outcome import Outcome, PassResult
from modelsync.retry import RetryPolicy
from modelsync.state import ModelState
from modelsync.store import ModelStore

__all__ = ["PassContext"]

# Metrics of a refused revision kept for the status page (the rest are dropped).
_REFUSED_METRICS_KEEP = 50


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

    def refuse(self, version: int, reason: str, metrics: dict[str, float] | None = None) -> None:
        """Record ``version`` as refused for good, with the reason (and its manifest's
        metrics, for the status page). The pass itself goes on: a refusal is the pass
        doing its work, not a failure of it."""
        state = self.state
        state.refused[version] = reason
        if metrics:
            state.refused_metrics[version] = dict(sorted(metrics.items())[:_REFUSED_METRICS_KEEP])
        for old in [v for v in state.refused_metrics if v not in state.refused]:
            del state.refused_metrics[old]
        state.last_error, state.last_error_at = reason, self.wall()
        state.record(self.wall(), "refused", version, reason=reason)
        self.ms.save_state(state)
        if version not in self.result.refused:
            self.result.refused.append(version)
        if self.result.error is None:
            self.result.error = reason  # what a one-shot `sync` prints
        self.log.bind(version=version).error("revision refused", reason=reason)

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
            state.last_error, state.last_error_at = error, self.wall()
            self.ms.save_state(state)
        except Exception:  # noqa: S110 - the original error is what the operator needs
            pass
