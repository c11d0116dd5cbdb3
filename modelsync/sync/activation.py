"""The end of a pass: tell the server, hear it back, commit, or roll back.

After a revision is activated (in place, journalled), the server is notified and
asked until it gives one of three answers (confirm.wait_loaded):

- loaded: the revision's smoke requests, if it carries any, are sent to the new
  version (modelsync.sync.smoke); a wrong answer, an error or a timeout rolls it
  back and refuses it with the difference as the reason; otherwise the previous
  version retires to the cache (commit);
- failed, in the server's own words: the previous version is put back, notified
  and confirmed, and the bad one refused for good;
- unknown (timeout, server gone): rolled back the same way, but refused only after
  ``unknown_attempts`` such rollbacks, so a slow server does not lose a good
  revision and one that kills the server is not tried for ever.

A model's first revision, activated while no server answers (an init container
runs before the server starts), stands unconfirmed; every pass begins by asking the
server about the active revision (``reconfirm``), which confirms it then, tells a
server that lost it (a restart) again, and clears a failed rollback once the server
serves the active revision. The verdict is journalled with the rollback, so a crash
anywhere in here is finished by the next pass's ``finish``.
"""

from __future__ import annotations

from modelsync.admitted import Admitted
from modelsync.confirm import probe_timeout, wait_loaded
from modelsync.errors import LiveCheckFailed, LoadFailed, ReloadError, ServerNotRunning
from modelsync.outcome import Outcome
from modelsync.reload import ProbeState, ReloadTarget
from modelsync.servers import notifier_for, prober_for
from modelsync.state import Pending
from modelsync.sync.context import PassContext
from modelsync.verdicts import LiveChecks

__all__ = ["activate", "finish", "reconfirm"]


def activate(ctx: PassContext, admitted: Admitted, *, retire_to: str = "quarantine") -> Outcome:
    """Swap the admitted revision in, then notify → confirm → commit, or roll back."""
    active = ctx.ms.active_version()
    ctx.result.candidate = admitted.version
    ctx.ms.activate(admitted, active, ctx.state, retire_to=retire_to)
    ctx.log.info("activated", version=admitted.version, previous=active, road=admitted.road)
    return finish(ctx)


# -- after an activation ---------------------------------------------------------


def finish(ctx: PassContext) -> Outcome:
    """notify → confirm → commit, or roll back; for the activation in the journal."""
    pending = ctx.state.pending
    assert pending is not None
    if pending.phase == "rolling_back":
        _confirm_previous(ctx)
        return _conclude_rollback(ctx)
    target = _target(ctx, pending.version)
    first = pending.previous is None
    try:
        if first and _unreachable(ctx, target):
            return _stand(ctx, "the server does not answer")
        try:
            _reload(ctx, target, unreachable_ends=first)
        except ServerNotRunning as exc:
            if not first:
                raise
            return _stand(ctx, str(exc))
        _smoke(ctx, pending.version)
    except ReloadError as exc:
        return _roll_back(ctx, exc)
    _commit(ctx, confirmed=True)
    return Outcome.ACTIVATED


def _smoke(ctx: PassContext, version: int) -> None:
    """The revision's smoke requests, after the server confirmed it; LiveCheckFailed
    when they fail. A pass stopped in here leaves the activation in the journal, and
    the next pass asks the server and sends them again."""
    # Imported here: the smoke client (urllib3) is needed only after a confirmed load.
    from modelsync.sync.smoke import run_smoke

    verdict = run_smoke(ctx, version)
    if verdict is None:
        return
    ctx.state.record_live(version, LiveChecks(smoke=verdict))
    ctx.result.live = ctx.state.live_checks[version]
    if verdict.verdict == "failed":
        raise LiveCheckFailed(f"smoke requests failed: {verdict.reason}")


def _stand(ctx: PassContext, why: str) -> Outcome:
    """The init-container case: no server yet; it loads this revision when it starts,
    and a later pass confirms it."""
    ctx.log.info(
        "no server answers yet; the revision stands and is confirmed once it does",
        version=ctx.state.pending.version if ctx.state.pending else None,
        reason=why,
    )
    _commit(ctx, confirmed=False)
    ctx.result.retry_soon = True
    return Outcome.ACTIVATED


def _commit(ctx: PassContext, *, confirmed: bool) -> None:
    state, pending = ctx.state, ctx.state.pending
    assert pending is not None
    state.confirmed = confirmed
    state.unknown.pop(pending.version, None)
    state.last_error = None
    if confirmed:
        state.server_reason = None
    manual = pending.retire_to == "cache"  # rollback_to: a person chose it
    state.record(
        ctx.wall(),
        "manual_rollback" if manual else "activated",
        pending.version,
        pending.previous,
    )
    removed = ctx.ms.commit(state, ctx.model.keep, ctx.wall())
    local = {*ctx.ms.cached_versions(), *ctx.ms.served_versions()}
    if any(v not in local for v in state.manifests):
        state.manifests = {v: d for v, d in state.manifests.items() if v in local}
        ctx.ms.save_state(state)
    # Never claim a confirmation nobody gave: with no confirm method, nobody did.
    asked = prober_for(ctx.model) is not None
    ctx.log.info(
        "committed",
        version=pending.version,
        removed=removed,
        retained=ctx.ms.cached_versions(),
        confirmed=confirmed and asked,
        server_asked=asked,
    )


# -- talking to the server ---------------------------------------------------------


def _target(ctx: PassContext, version: int) -> ReloadTarget:
    return ReloadTarget(ctx.model.name, version, ctx.ms.dir / str(version))


def _unreachable(ctx: PassContext, target: ReloadTarget) -> bool:
    prober = prober_for(ctx.model)
    if prober is None:
        return False
    probe = prober.probe(target, probe_timeout(ctx.model.confirm), ctx.cancel)
    return probe.state is ProbeState.UNREACHABLE


def _reload(ctx: PassContext, target: ReloadTarget, *, unreachable_ends: bool) -> None:
    """Tell the server and wait for its verdict on ``target``."""
    notifier, prober = notifier_for(ctx.model), prober_for(ctx.model)
    if notifier is not None:
        notifier.notify(target, ctx.cancel)
    if prober is not None:
        wait_loaded(
            prober, target, ctx.model.confirm, ctx.cancel, unreachable_ends=unreachable_ends
        )
    if prober is not None:
        ctx.log.info("server confirmed", version=target.version)
    elif notifier is not None:
        ctx.log.info("server told; no confirm method, so not confirmed", version=target.version)


# -- rolling back ------------------------------------------------------------------


def _roll_back(ctx: PassContext, exc: ReloadError) -> Outcome:
    ms, state, log = ctx.ms, ctx.state, ctx.log
    pending = state.pending
    assert pending is not None
    pending.reason = str(exc)
    if isinstance(exc, LiveCheckFailed):
        pending.verdict = "check_failed"
    else:
        pending.verdict = "failed" if isinstance(exc, LoadFailed) else "unknown"
    log.error(
        "the revision failed its live checks; rolling back"
        if isinstance(exc, LiveCheckFailed)
        else "server did not take the revision; rolling back",
        version=pending.version,
        previous=pending.previous,
        reason=pending.reason,
        verdict=pending.verdict,
    )
    ms.rollback(state)
    if pending.previous is None:
        log.error(
            "nothing to roll back to: this was the model's first revision; "
            "the model has no active version",
            version=pending.version,
        )
    _confirm_previous(ctx)
    return _conclude_rollback(ctx)


def _confirm_previous(ctx: PassContext) -> None:
    ms, state, log = ctx.ms, ctx.state, ctx.log
    pending = state.pending
    if pending is None or pending.previous is None:
        return
    try:
        _reload(ctx, _target(ctx, pending.previous), unreachable_ends=False)
    except ReloadError as exc:
        state.rollback_failed = True
        state.server_reason = str(exc)
        ms.save_state(state)  # before the log line: readiness reads the state
        log.critical(
            "previous revision failed to confirm after rollback; the store is "
            "left as it is and the server needs attention",
            version=pending.previous,
            reason=str(exc),
        )
        return
    state.rollback_failed = False
    ms.save_state(state)
    log.info("rolled back", version=pending.previous, refused=pending.version)


def _conclude_rollback(ctx: PassContext) -> Outcome:
    """End a rollback: refuse the revision, or count a rollback without a verdict."""
    state, model = ctx.state, ctx.model
    pending = state.pending
    assert pending is not None
    state.pending = None
    version, reason = pending.version, pending.reason
    ctx.result.error = reason
    state.record(ctx.wall(), "rolled_back", version, pending.previous, reason)
    if pending.retire_to != "quarantine":
        ctx.ms.save_state(state)
    elif pending.verdict == "unknown":
        count = state.unknown.get(version, 0) + 1
        if count >= model.unknown_attempts:
            state.unknown.pop(version, None)
            ctx.refuse(
                version,
                f"no verdict from the server in {count} attempts (it hung, crashed or "
                f"did not answer in time): {reason}",
            )
        else:
            state.unknown[version] = count
            state.last_error, state.last_error_at = reason, ctx.wall()
            ctx.ms.save_state(state)
            ctx.log.warning(
                "no verdict from the server; rolled back, will try the revision again",
                version=version,
                attempt=count,
                unknown_attempts=model.unknown_attempts,
            )
    elif pending.verdict == "check_failed":
        ctx.refuse(version, f"the server loaded it, but {reason}")
    else:
        ctx.refuse(version, f"server could not load it: {reason}")
    return Outcome.ROLLED_BACK


# -- every pass ------------------------------------------------------------------------


def reconfirm(ctx: PassContext) -> bool:
    """Ask the server about the active revision (one request); tell it again if it
    lost it. False when the pass should stop here (its outcome is set)."""
    ms, state, log = ctx.ms, ctx.state, ctx.log
    active = ms.active_version()
    prober = prober_for(ctx.model)
    if active is None or prober is None:
        return True
    target = _target(ctx, active)
    probe = prober.probe(target, probe_timeout(ctx.model.confirm), ctx.cancel)
    if probe.state is ProbeState.LOADED:
        _served(ctx, active)
        return True
    if probe.state is ProbeState.UNREACHABLE:
        log.info(
            "server not reachable; keeping the active revision, new ones wait for it",
            version=active,
            reason=probe.detail,
        )
        ctx.result.outcome = Outcome.UNCHANGED
        ctx.result.retry_soon = True
        ctx.result.unreachable = probe.detail or "unreachable"
        return False
    try:
        if probe.state is ProbeState.LOADING:
            # Busy with it (a server loading its repository at start): wait for it.
            wait_loaded(prober, target, ctx.model.confirm, ctx.cancel)
        else:
            log.warning(
                "server does not serve the active revision; telling it again",
                version=active,
                server_said=probe.detail,
            )
            _reload(ctx, target, unreachable_ends=False)
    except ReloadError as exc:
        if not state.confirmed and isinstance(exc, LoadFailed):
            # It stood without a server, and the server now refuses it.
            state.pending = Pending(active, None)
            ctx.result.candidate = active
            ctx.result.outcome = _roll_back(ctx, exc)
            return False
        state.server_reason = str(exc)
        ms.save_state(state)
        raise ReloadError(f"the server does not serve active version {active}: {exc}") from exc
    _served(ctx, active)
    return True


def _served(ctx: PassContext, version: int) -> None:
    state = ctx.state
    if state.confirmed and not state.rollback_failed and state.server_reason is None:
        return
    was_unconfirmed, cleared = not state.confirmed, state.rollback_failed
    state.confirmed, state.rollback_failed, state.server_reason = True, False, None
    ctx.ms.save_state(state)
    # Said once it is on disk: whoever acts on the line (an operator, a test) reads
    # the state it describes.
    ctx.log.info(
        "server serves the active revision",
        version=version,
        was_unconfirmed=was_unconfirmed,
        cleared_rollback_failed=cleared,
    )
