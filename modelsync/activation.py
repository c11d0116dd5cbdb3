"""The end of a pass: tell the server, hear it back, commit, or roll back.

After a revision is activated (in place, behind ``current``, journalled), the
server is notified and must confirm; then the previous version retires to the
cache (commit). If it cannot, the previous version is put back, notified and
confirmed, and the bad one refused for good (roll back). A crash anywhere in here
leaves the journal, from which the next pass runs ``finish`` again.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.confirm import build_confirmer
from modelsync.errors import ReloadError
from modelsync.notify import build_notifier
from modelsync.outcome import Outcome, PassResult
from modelsync.reload import ReloadTarget, ServerNotRunning
from modelsync.state import ModelState
from modelsync.store import ModelStore

__all__ = ["Activation"]

Log = structlog.typing.FilteringBoundLogger
# Records a version refused for good: (store, state, version, reason, result, log).
Refuse = Callable[[ModelStore, ModelState, int, str, PassResult, Log], None]


class Activation:
    def __init__(self, wall: Callable[[], float], refuse: Refuse) -> None:
        self._wall = wall
        self._refuse = refuse

    def finish(
        self,
        model: ModelConfig,
        ms: ModelStore,
        state: ModelState,
        cancel: CancelToken,
        result: PassResult,
        log: Log,
    ) -> Outcome:
        """notify → confirm → commit, or roll back; for the activation in the journal."""
        pending = state.pending
        assert pending is not None
        if pending.phase == "rolling_back":
            self._confirm_previous(model, ms, state, cancel, log)
            ms.finish_rollback(state)
            return Outcome.ROLLED_BACK
        target = ReloadTarget(model.name, pending.version, ms.dir / str(pending.version))
        try:
            self._reload(model, target, pending.previous is None, cancel, log)
        except ReloadError as exc:
            return self._roll_back(model, ms, state, str(exc), cancel, result, log)
        self.commit(model, ms, state, log)
        return Outcome.ACTIVATED

    def _reload(
        self, model: ModelConfig, target: ReloadTarget, first: bool, cancel: CancelToken, log: Log
    ) -> None:
        """Tell the server and wait for it to confirm ``target``."""
        try:
            build_notifier(model.notify).notify(target)
        except ServerNotRunning as exc:
            if not first:
                raise
            # The init-container case: the server starts later and loads `current`.
            log.info(
                "no server running yet; it will load current when it starts",
                version=target.version,
                reason=str(exc),
            )
            return
        build_confirmer(model.confirm).confirm(target, cancel)
        if model.notify.method != "none" or model.confirm.method != "none":
            log.info("server confirmed", version=target.version)

    def _roll_back(
        self,
        model: ModelConfig,
        ms: ModelStore,
        state: ModelState,
        reason: str,
        cancel: CancelToken,
        result: PassResult,
        log: Log,
    ) -> Outcome:
        pending = state.pending
        assert pending is not None
        bad = pending.version
        log.error(
            "server did not take the revision; rolling back",
            version=bad,
            previous=pending.previous,
            reason=reason,
        )
        ms.rollback(state)
        if pending.previous is None:
            log.error(
                "nothing to roll back to: this was the model's first revision; "
                "the model has no active version",
                version=bad,
            )
        self._confirm_previous(model, ms, state, cancel, log)
        retire_to = pending.retire_to
        ms.finish_rollback(state)
        if retire_to == "quarantine":
            self._refuse(
                ms, state, bad, f"server could not load it: {reason}", result, log.bind(version=bad)
            )
        result.error = reason
        return Outcome.ROLLED_BACK

    def _confirm_previous(
        self, model: ModelConfig, ms: ModelStore, state: ModelState, cancel: CancelToken, log: Log
    ) -> None:
        pending = state.pending
        if pending is None or pending.previous is None:
            return
        target = ReloadTarget(model.name, pending.previous, ms.dir / str(pending.previous))
        try:
            self._reload(model, target, False, cancel, log)
            state.rollback_failed = False
            log.info("rolled back", version=pending.previous, refused=pending.version)
        except ReloadError as exc:
            state.rollback_failed = True
            log.critical(
                "previous revision failed to confirm after rollback; the store is "
                "left as it is and the server needs attention",
                version=pending.previous,
                reason=str(exc),
            )
        ms.save_state(state)

    def commit(self, model: ModelConfig, ms: ModelStore, state: ModelState, log: Log) -> None:
        removed = ms.commit(state, model.keep, self._wall())
        state.last_error = None
        ms.save_state(state)
        log.info("committed", removed=removed, retained=ms.cached_versions())
