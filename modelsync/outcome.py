"""What one pass did: its Outcome and PassResult (read by the daemon, metrics, reports).

Below the pass package (modelsync.sync) so that the modules that read results
(metrics, schedule, status) never import the pass itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from modelsync.state import ChannelInfo
from modelsync.transfer import TransferStats
from modelsync.verdicts import BakeVerdict, LiveChecks

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
    # Newer versions this pass could not fetch for a reason that is not a refusal
    # (modelsync.sync.context.PassContext.defer), with the error: an older revision may
    # stand in, but the model is not where it should be (a one-shot `sync` exits 1).
    deferred: dict[int, str] = field(default_factory=dict)
    stats: TransferStats = field(default_factory=TransferStats)
    duration: float = 0.0
    # Ask again soon (not a failure): the server has not confirmed the active
    # revision yet, or could not be reached.
    retry_soon: bool = False
    # The previous revision failed to confirm after a rollback, and still does.
    rollback_failed: bool = False
    # The release channel as this pass saw it (models with ``channel`` only).
    channel: ChannelInfo | None = None
    # A newer revision this pass found but could not bring in (the server does not
    # answer): a one-shot `sync` that leaves one waiting did not do its job.
    waiting: int | None = None
    # What the probe said when the server could not be reached.
    unreachable: str | None = None
    # The live checks of the candidate this pass activated (None: none ran).
    live: LiveChecks | None = None
    # The model's bake as this pass left it (modelsync.sync.bake), and how soon the
    # next pass is wanted for it (the end of the window).
    bake: BakeVerdict | None = None
    wake_in: float | None = None

    @property
    def succeeded(self) -> bool:
        """The pass did its work (a refusal included; not when it passed a newer
        revision over because it could not be fetched): what ``last_success_at`` and
        its metric record, alike."""
        return (
            self.outcome in (Outcome.UNCHANGED, Outcome.ACTIVATED)
            and self.waiting is None
            and not self.deferred
        )

    @property
    def ok(self) -> bool:
        return (
            self.outcome in (Outcome.UNCHANGED, Outcome.ACTIVATED)
            and not self.refused
            and not self.deferred
            and self.waiting is None
        )
