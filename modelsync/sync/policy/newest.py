"""The default policy: the newest complete, acceptable version newer than the active one.

Complete means its manifest exists (or, for producers without one, its marker
exists and nothing under it changed for ``settle``); acceptable means not refused
before and passing the candidate checks. An idle pass costs one listing; manifests
are read only for versions newer than the active one. A version that fails a check
is refused and the next older one is tried, so a hostile newest revision never
hides a good one below it.

Neither does a broken one: a version that cannot be read or fetched for a reason
that is not a refusal (an object missing or forbidden, bytes damaged on every
fetch) is passed over (modelsync.sync.charge: deferred, not refused, tried again
later, since it may be mid-upload), and the next older one is tried, here or, when
its download fails, through ``older``. The prefix is listed once per pass (kept in
the pass context): a walk down past N such versions costs N manifest reads, not N
listings; versions deferred by an earlier pass are skipped until their retry time.
"""

from __future__ import annotations

from modelsync.errors import EmptySourceError, RefusedError
from modelsync.sources import Source
from modelsync.sync.charge import charge
from modelsync.sync.context import PassContext
from modelsync.sync.policy import Choice
from modelsync.sync.policy.candidate import read_candidate

__all__ = ["Newest"]


class Newest:
    def choose(self, ctx: PassContext, source: Source, active: int | None) -> Choice | None:
        versions = ctx.listing = ctx.list_versions(source)
        if not versions and not ctx.model.allow_empty:
            raise EmptySourceError(
                f"{source.url}: no revisions there (no <version>/ under it); check the URL, "
                "or set allow_empty = true while the first revision is on its way"
            )
        return self._first(ctx, source, versions, active)

    def older(
        self, ctx: PassContext, source: Source, active: int | None, below: int
    ) -> Choice | None:
        """The newest acceptable version below ``below`` (whose download failed, for a
        reason that is not a refusal) and newer than the active one; None if none.
        From the pass's listing: the bucket is not listed again."""
        listing = ctx.listing if ctx.listing is not None else ctx.list_versions(source)
        versions = [v for v in listing if v < below]
        return self._first(ctx, source, versions, active)

    @staticmethod
    def _first(
        ctx: PassContext, source: Source, versions: list[int], active: int | None
    ) -> Choice | None:
        for version in sorted(versions, reverse=True):
            if active is not None and version <= active:
                return None
            if version in ctx.state.refused:
                ctx.log.debug("skipping refused version", version=version)
                continue
            if version in ctx.deferred or ctx.passed_over(version):
                continue
            try:
                candidate = read_candidate(ctx, source, version)
            except RefusedError as exc:
                ctx.refuse(version, str(exc), exc.metrics)
                continue
            except Exception as exc:
                # Its manifest cannot be read now (403, damaged each time...): that
                # says nothing for good about it, nor about the versions below it.
                charge(ctx, source, version, exc)
                continue
            if candidate is None:
                ctx.log.debug("incomplete version (no manifest yet)", version=version)
                continue
            return Choice(version, candidate)
        return None
