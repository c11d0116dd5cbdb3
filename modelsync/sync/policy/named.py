"""The choice of a version something outside the host names (a channel's pointer, a
registry's alias): shared by the channel and the registry policies, and apart from
either so that a registry model does not load the channel code."""

from __future__ import annotations

from modelsync.errors import RefusedError
from modelsync.sources import Source
from modelsync.sync.context import PassContext
from modelsync.sync.policy import Choice
from modelsync.sync.policy.candidate import read_candidate

__all__ = ["named_choice"]


def named_choice(ctx: PassContext, source: Source, version: int, namer: str) -> Choice | None:
    """The choice of ``version``, which ``namer`` (a channel, a registry) named: from a
    retained copy when this host served it before, else checked in the bucket."""
    retained = ctx.ms.path_of(version)
    if retained is not None:
        # Back to a revision this host served before (a halted canary, an alias moved
        # back): tried from the local copy first; admission decides whether it may be.
        return Choice(version, None, retained)
    try:
        candidate = read_candidate(ctx, source, version)
    except RefusedError as exc:
        ctx.refuse(version, str(exc), exc.metrics)
        return None
    if candidate is None:
        ctx.log.warning(
            "the version named has no manifest (incomplete or missing)",
            version=version,
            named_by=namer,
        )
        return None
    return Choice(version, candidate)
