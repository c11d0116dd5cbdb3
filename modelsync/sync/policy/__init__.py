"""Which revision a pass should bring in: one policy per way of choosing, one seam.

``Policy.choose`` looks at the bucket (and, for a channel, its pointer and the
canary's reports) and answers with a ``Choice`` — the version, the checked
candidate read from the bucket, or a retained local copy to try first — or None
when the model should stay as it is. A choice is never trusted on its own: what it
names still passes admission (modelsync.sync.admit) before it is served.

- newest.py: the newest complete, acceptable version newer than the active one;
- follow.py: what the model's release channel names for this host;
- candidate.py: the checks of a candidate (manifest, signature, binding, gate);
- halt.py: when a canary stops fleet-wide (HaltRule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelsync.sources import Source
from modelsync.sync.context import PassContext
from modelsync.sync.policy.candidate import Candidate

__all__ = ["Choice", "Policy"]


@dataclass(frozen=True)
class Choice:
    version: int
    # Read from the bucket and checked (None when a retained copy is to be tried first).
    candidate: Candidate | None = None
    # A copy on local disk (served before): activated without a download if admitted.
    retained: Path | None = None


class Policy(Protocol):
    def choose(self, ctx: PassContext, source: Source, active: int | None) -> Choice | None:
        """The revision to bring in, or None to stay. Versions found unacceptable on
        the way are refused through ``ctx.refuse``; a version that cannot be read now
        for a reason that is not a refusal may be passed over through ``ctx.defer``
        (newest.py); errors that say nothing about a revision (network, channel
        pointer) raise."""
        ...
