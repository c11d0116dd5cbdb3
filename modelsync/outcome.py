"""One pass: what it works on (PassContext) and what it did (Outcome, PassResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.state import ChannelInfo, ModelState
from modelsync.store import ModelStore
from modelsync.transfer import TransferStats

__all__ = ["Outcome", "PassContext", "PassResult"]


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
    # Ask again soon (not a failure): the server has not confirmed the active
    # revision yet, or could not be reached.
    retry_soon: bool = False
    # The previous revision failed to confirm after a rollback, and still does.
    rollback_failed: bool = False
    # The release channel as this pass saw it (models with ``channel`` only).
    channel: ChannelInfo | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.UNCHANGED, Outcome.ACTIVATED) and not self.refused


@dataclass
class PassContext:
    """Everything one pass of one model works on, built once when it takes the lock."""

    model: ModelConfig
    ms: ModelStore
    state: ModelState
    cancel: CancelToken
    result: PassResult
    log: structlog.typing.FilteringBoundLogger
