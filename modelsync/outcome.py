"""What one pass did: its Outcome and the PassResult the CLI, daemon and metrics read."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from modelsync.transfer import TransferStats

__all__ = ["Outcome", "PassResult"]


class Outcome(StrEnum):
    UNCHANGED = "unchanged"  # already at the newest acceptable revision (or pinned)
    ACTIVATED = "activated"  # a newer revision is now active and confirmed
    ROLLED_BACK = "rolled_back"  # the server could not load it; the previous is back
    FAILED = "failed"  # the pass failed; the store is as it was


@dataclass
class PassResult:
    model: str
    outcome: Outcome
    active: int | None
    candidate: int | None = None
    error: str | None = None
    refused: list[int] = field(default_factory=list)
    stats: TransferStats = field(default_factory=TransferStats)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.UNCHANGED, Outcome.ACTIVATED) and not self.refused
