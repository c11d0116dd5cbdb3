"""The chosen revision brought in: from its retained copy or the bucket, admitted.

When the chosen revision cannot be brought in, the newest policy lets the next older
acceptable one stand in, in the same pass:

- a failure on its road that is not a refusal (a download larger than the free space,
  a store error on its objects) is charged to it (charge.py) and it is deferred;
- a refusal on its download (bytes that are not the manifest's) refuses it for good.

Either way the pass goes on down the listing, within the pass's bound on refusals and
deferrals, so that N bad revisions above a good one cost one pass, not N. A channel or
a registry names its version, and nothing else stands in for it.
"""

from __future__ import annotations

from modelsync.admitted import Admitted
from modelsync.errors import Cancelled, RefusedError
from modelsync.foreign import move_aside
from modelsync.sources import Source
from modelsync.sync.admit import DOWNLOAD, admit
from modelsync.sync.charge import charge, refused_within_bound
from modelsync.sync.context import PassContext
from modelsync.sync.fetch import ProgressFactory, fetch
from modelsync.sync.policy import Choice, Policy
from modelsync.sync.policy.candidate import read_candidate
from modelsync.sync.policy.newest import Newest
from modelsync.validate import validate_revision
from modelsync.verified import VerifiedFiles

__all__ = ["bring_in", "stood_in"]


def bring_in(
    ctx: PassContext,
    source: Source,
    policy: Policy,
    choice: Choice,
    active: int | None,
    progress: ProgressFactory | None,
) -> Admitted | None:
    """The chosen revision, admitted (None: refused), or an older one in its place."""
    while True:
        ctx.result.candidate = choice.version
        admitted = _from_retained(ctx, choice)
        if admitted is not None:
            return admitted
        try:
            admitted = _from_bucket(ctx, source, choice, progress)
        except Exception as exc:
            if not isinstance(policy, Newest) or isinstance(exc, Cancelled):
                raise
            # Whatever failed on this revision's road is charged to it, unless it is
            # shown global (charge.py: the one rule, and what counts as global).
            charge(ctx, source, choice.version, exc)
            older = policy.older(ctx, source, active, choice.version)
            if older is None:
                ctx.keep_deferrals()
                raise
        else:
            refused = choice.version in ctx.result.refused
            if admitted is not None or not refused or not isinstance(policy, Newest):
                return admitted
            if not refused_within_bound(ctx):
                return None
            older = policy.older(ctx, source, active, choice.version)
            if older is None:
                return None
        ctx.log.warning(
            "trying an older revision while a newer one is refused or cannot be fetched",
            version=older.version,
            newer=choice.version,
        )
        choice = older


def stood_in(ctx: PassContext) -> None:
    """Say, where status and /readyz read it, that the model is not on its newest
    revision (activation cleared the last error): an older one stands in."""
    state = ctx.state
    newest = max(ctx.deferred)
    text = (
        f"version {newest} could not be fetched ({ctx.deferred[newest]}); "
        f"serving {ctx.ms.active_version()} meanwhile"
    )
    ctx.result.error = text
    state.last_error, state.last_error_at = text, ctx.wall()
    ctx.ms.save_state(state)


def _from_retained(ctx: PassContext, choice: Choice) -> Admitted | None:
    """The chosen revision from its local copy, if that copy is admitted; a copy that
    is not is moved aside (never kept, never served) and the bucket decides."""
    if choice.retained is None:
        return None
    try:
        return admit(ctx, choice.version, choice.retained, "retained copy")
    except RefusedError as exc:
        moved = move_aside(choice.retained, ctx.ms.foreign_dir)
        ctx.log.warning(
            "a retained copy is not admissible; fetching the revision again",
            version=choice.version,
            reason=str(exc),
            moved_to=str(moved),
        )
        return None


def _from_bucket(
    ctx: PassContext, source: Source, choice: Choice, progress: ProgressFactory | None
) -> Admitted | None:
    """Fetch, validate and admit the chosen revision; refuse it when it fails a check
    (the pass goes on: a refusal is not a failure)."""
    version = choice.version
    try:
        candidate = choice.candidate or read_candidate(ctx, source, version)
        if candidate is None:
            ctx.log.warning("the chosen version has no manifest yet", version=version)
            return None
        verified = VerifiedFiles.load(ctx.ms.verified_path)
        staged = fetch(ctx, source, candidate, progress, verified)
        validate_revision(staged, ctx.model, version, ctx.cancel)
        return admit(ctx, version, staged, DOWNLOAD, verified=verified)
    except RefusedError as exc:
        ctx.refuse(version, str(exc), exc.metrics)
        return None
