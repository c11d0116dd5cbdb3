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

from modelsync.config import ModelConfig
from modelsync.confirm import build_confirmer
from modelsync.errors import ReloadError
from modelsync.notify import build_notifier
from modelsync.outcome import Outcome, PassContext
from modelsync.reload import ReloadTarget, ServerNotRunning
from modelsync.state import ModelState
from modelsync.store import ModelStore

__all__ = ["Activation"]

Log = structlog.typing.FilteringBoundLogger
# Records a version refused for good: (pass, version, reason).
Refuse = Callable[[PassContext, int, str], None]


class Activation:
    def __init__(self, wall: Callable[[], float], refuse: Refuse) -> None:
        self._wall = wall
        self._refuse = refuse

    def finish(self, ctx: PassContext) -> Outcome:
        """notify → confirm → commit, or roll back; for the activation in the journal."""
        pending = ctx.state.pending
        assert pending is not None
        log = ctx.log.bind(version=pending.version)
        if pending.phase == "rolling_back":
            self._confirm_previous(ctx)
            ctx.ms.finish_rollback(ctx.state)
            return Outcome.ROLLED_BACK
        target = ReloadTarget(ctx.model.name, pending.version, ctx.ms.dir / str(pending.version))
        try:
            self._reload(ctx, target, pending.previous is None)
        except ReloadError as exc:
            return self._roll_back(ctx, str(exc))
        self.commit(ctx.model, ctx.ms, ctx.state, log)
        return Outcome.ACTIVATED

    def _reload(self, ctx: PassContext, target: ReloadTarget, first: bool) -> None:
        """Tell the server and wait for it to confirm ``target``."""
        model, log = ctx.model, ctx.log
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
        build_confirmer(model.confirm).confirm(target, ctx.cancel)
        if model.notify.method != "none" or model.confirm.method != "none":
            log.info("server confirmed", version=target.version)

    def _roll_back(self, ctx: PassContext, reason: str) -> Outcome:
        ms, state, log = ctx.ms, ctx.state, ctx.log
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
        self._confirm_previous(ctx)
        retire_to = pending.retire_to
        ms.finish_rollback(state)
        if retire_to == "quarantine":
            self._refuse(ctx, bad, f"server could not load it: {reason}")
        ctx.result.error = reason
        return Outcome.ROLLED_BACK

    def _confirm_previous(self, ctx: PassContext) -> None:
        ms, state, log = ctx.ms, ctx.state, ctx.log
        pending = state.pending
        if pending is None or pending.previous is None:
            return
        target = ReloadTarget(ctx.model.name, pending.previous, ms.dir / str(pending.previous))
        try:
            self._reload(ctx, target, False)
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
