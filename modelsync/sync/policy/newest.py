"""The default policy: the newest complete, acceptable version newer than the active one.

Complete means its manifest exists (or, for producers without one, its marker
exists and nothing under it changed for ``settle``); acceptable means not refused
before and passing the candidate checks. An idle pass costs one listing; manifests
are read only for versions newer than the active one. A version that fails a check
is refused and the next older one is tried, so a hostile newest revision never
hides a good one below it.
"""

from __future__ import annotations

import functools

from modelsync.errors import EmptySourceError, RefusedError
from modelsync.retry import call_with_retry
from modelsync.sources import Source
from modelsync.sync.context import PassContext
from modelsync.sync.policy import Choice
from modelsync.sync.policy.candidate import read_candidate

__all__ = ["Newest"]


class Newest:
    def choose(self, ctx: PassContext, source: Source, active: int | None) -> Choice | None:
        versions = call_with_retry(
            functools.partial(source.list_versions, cancel=ctx.cancel),
            ctx.retry,
            ctx.cancel,
            f"{source.url}: list",
            ctx.log,
        )
        if not versions and not ctx.model.allow_empty:
            raise EmptySourceError(
                f"{source.url}: no revisions there (no <version>/ under it); check the URL, "
                "or set allow_empty = true while the first revision is on its way"
            )
        for version in sorted(versions, reverse=True):
            if active is not None and version <= active:
                return None
            if version in ctx.state.refused:
                ctx.log.debug("skipping refused version", version=version)
                continue
            try:
                candidate = read_candidate(ctx, source, version)
            except RefusedError as exc:
                ctx.refuse(version, str(exc), exc.metrics)
                continue
            if candidate is None:
                ctx.log.debug("incomplete version (no manifest yet)", version=version)
                continue
            return Choice(version, candidate)
        return None
