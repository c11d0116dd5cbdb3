"""A rollout's status from real reports and failure markers: who confirmed, who failed
(a marker's reason winning over a report), whether the canary is halted, who has not
reported."""

from __future__ import annotations

from modelsync.channel import Canary, Pointer
from modelsync.release_status import RolloutStatus
from modelsync.reports import Report, Tally

NONCE = "0123456789abcdef"


def _report(identity: str, outcome: str, reason: str = "") -> Report:
    return Report.model_validate(
        {
            "identity": identity,
            "model": "m",
            "version": 5,
            "outcome": outcome,
            "reason": reason,
            "canary": NONCE,
        }
    )


def _status(markers: dict[str, str], halt_after: int = 1) -> RolloutStatus:
    pointer = Pointer(
        stable=4, canary=Canary(version=5, percent=10, nonce=NONCE), halt_after=halt_after
    )
    tally = Tally(
        (_report("a", "confirmed"), _report("b", "rolled_back", "server could not load it")),
        ignored=1,
    )
    return RolloutStatus(pointer, 5, tally, ("c",), markers)


def test_a_failure_marker_halts_the_canary_and_names_its_host() -> None:
    status = _status({"b": "rolled_back: server could not load it (marker)"})
    assert status.halted and status.halt is not None
    doc = status.as_dict()
    assert doc["confirmed"] == ["a"]
    assert doc["failed"] == {"b": "rolled_back: server could not load it (marker)"}
    assert doc["halt"]["failed_hosts"] == ["b"] and doc["halted"] is True
    assert doc["not_reported"] == ["c"] and doc["unreadable_reports"] == 1


def test_a_failed_report_without_a_marker_is_listed_but_does_not_halt() -> None:
    status = _status({})
    assert not status.halted
    assert status.failed() == {"b": "rolled_back: server could not load it"}
    assert status.as_dict()["halt"]["rule"] is None


def test_no_version_to_count_is_an_empty_status() -> None:
    status = RolloutStatus(Pointer(), None, None, ())
    doc = status.as_dict()
    assert doc["version"] is None and doc["confirmed"] == [] and doc["failed"] == {}
    assert not status.halted
