"""After a pass: this host's reports on the versions it settled (``report = true``)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from modelsync.outcome import Outcome as PassOutcome
from modelsync.outcome import PassResult
from modelsync.reports import Outcome, write_report
from modelsync.sources.control import ControlStore
from modelsync.state import ChannelInfo
from modelsync.verdicts import LiveChecks

__all__ = ["outcomes_of", "report_pass"]


def outcomes_of(result: PassResult, refused: dict[int, str]) -> list[tuple[int, Outcome, str]]:
    """The reports a pass owes: its candidate's outcome and every version it refused."""
    found: list[tuple[int, Outcome, str]] = []
    candidate = result.candidate
    if candidate is not None and result.outcome is PassOutcome.ACTIVATED:
        found.append((candidate, "confirmed", ""))
    elif candidate is not None and result.outcome is PassOutcome.ROLLED_BACK:
        found.append((candidate, "rolled_back", result.error or ""))
    elif (
        result.bake is not None
        and result.bake.verdict in ("passed", "inconclusive")
        and result.active is not None
    ):
        # A bake that ended well: the confirmed report again, now with its figures.
        found.append((result.active, "confirmed", ""))
    rolled_back = result.candidate if result.outcome is PassOutcome.ROLLED_BACK else None
    found += [(v, "refused", refused.get(v, "")) for v in result.refused if v != rolled_back]
    return found


def report_pass(
    source: ControlStore,
    result: PassResult,
    refused: dict[int, str],
    identity: str,
    wall: Callable[[], float],
    channel: ChannelInfo | None = None,
) -> None:
    """Write the reports; a report that cannot be written is logged, never fatal."""
    for version, outcome, reason in outcomes_of(result, refused):
        # The smoke verdict is the candidate's; the bake's record belongs to the version
        # it judged (the pass's candidate, or the active version when a bake ended well).
        smoke = result.live.smoke if result.live and version == result.candidate else None
        baked = result.bake is not None and version in (result.candidate, result.active)
        bake = result.bake if baked else None
        live = LiveChecks(smoke=smoke, bake=bake) if smoke or bake else None
        try:
            write_report(
                source,
                result.model,
                version,
                identity,
                outcome,
                reason,
                wall,
                channel=channel,
                live=live,
            )
        except Exception as exc:  # the pass's outcome stands; say why
            structlog.get_logger().warning(
                "could not write the report", model=result.model, version=version, error=str(exc)
            )
