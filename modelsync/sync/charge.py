"""Who pays for a failure: the revision being brought in, or the pass.

Any failure while reading, fetching, staging or validating a revision the newest
policy chose is charged to that revision: refused when it says the revision is
wrong for good (RefusedError), else deferred (``PassContext.defer``: passed over
with its reason, remembered, tried again later) so that the next older one may
stand in. Which errors a revision can cause is not a list someone keeps: a bucket
writer decides the manifest, the sizes, the paths, the stored encodings, the files
a server preset reads, so every failure on its road is first taken as its.

Only a failure shown to be global ends the pass, since walking down the versions
would meet it on each of them:

- a stop or the pass deadline (Cancelled): the daemon's, not the revision's;
- the listing failing: never charged, it is not a revision's road (policy/newest.py);
- the local store failing (StoreError) on a second revision of the pass: one
  revision can name a path or a size the store cannot take, two in a row say the
  volume is failing (read-only, I/O errors) for any revision. Free space is not
  that: it is compared with what each revision declares, so a revision that does
  not fit is deferred whatever the others do (NoSpaceError), and a disk full for
  every revision defers each one and the pass fails when none is left;
- a retryable storage error (retries spent) while the listing, which the bucket
  writer does not choose, fails too: the server is unreachable, not one object.
  Whether an error is retryable can be set by the bucket (an object stored
  gzip-encoded), so a second such error is no proof on its own.

The work a pass spends on revisions it cannot fetch is bounded: at most
MAX_DEFERRALS_PER_PASS, each one charged once, from a listing read once
(``PassContext.listing``), and what was deferred is remembered across passes
(state.Deferrals), so the next pass goes on below it. A good revision below N
versions that cannot be fetched is reached within ceil(N / MAX_DEFERRALS_PER_PASS)
passes, or fewer when the deadline allows.
"""

from __future__ import annotations

from modelsync.errors import Cancelled, ModelsyncError, NoSpaceError, RefusedError, StoreError
from modelsync.sources import Source
from modelsync.sync.context import PassContext

__all__ = ["MAX_DEFERRALS_PER_PASS", "charge", "refused_within_bound"]

# A deferral costs a manifest read and a failed fetch (tens of ms on S3, seconds when
# retries run out); 1,000 of them fit a pass on any store without being all of it,
# and 3,000 hostile versions are behind a good one after three passes.
MAX_DEFERRALS_PER_PASS = 1000


def charge(ctx: PassContext, source: Source, version: int, error: Exception) -> None:
    """Charge ``error``, raised while bringing in chosen ``version``, to that revision
    (refused or deferred; the caller tries the next older one), or raise it again when
    it is global (see the module's docstring) or the pass has deferred enough."""
    if isinstance(error, Cancelled):
        raise error
    if isinstance(error, RefusedError):
        ctx.refuse(version, str(error), error.metrics)
        return
    if _global(ctx, source, error):
        raise error
    ctx.defer(version, error)
    if len(ctx.deferred) >= MAX_DEFERRALS_PER_PASS:
        ctx.log.warning(
            "this pass passed over as many revisions as it may; the next goes on below",
            below=version,
            deferred=len(ctx.deferred),
        )
        ctx.keep_deferrals()
        raise ctx.deferred_error or error


def _global(ctx: PassContext, source: Source, error: Exception) -> bool:
    if isinstance(error, NoSpaceError):
        return False
    if isinstance(error, StoreError):
        if ctx.store_failed:
            return True
        ctx.store_failed = True
        return False
    if isinstance(error, ModelsyncError) and error.retryable:
        try:
            ctx.list_versions(source)
        except Cancelled:
            raise
        except ModelsyncError:
            return True
    return False


def refused_within_bound(ctx: PassContext) -> bool:
    """Whether the pass may go on to an older revision after refusing one on its
    download: the refusals and deferrals of one pass share MAX_DEFERRALS_PER_PASS."""
    if len(ctx.result.refused) + len(ctx.deferred) < MAX_DEFERRALS_PER_PASS:
        return True
    ctx.log.warning(
        "this pass passed over as many revisions as it may; the next goes on below",
        refused=len(ctx.result.refused),
        deferred=len(ctx.deferred),
    )
    return False
