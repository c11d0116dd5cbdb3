"""`modelsync status` for people: each state of a model in the report becomes its line."""

from __future__ import annotations

from typing import Any

from modelsync.status_text import status_lines


def _entry(**extra: Any) -> dict[str, Any]:
    base = {"name": "ranker", "source": "gs://b/ranker", "server": "triton", "active_version": 3}
    return {**base, **extra}


def test_a_served_model_names_its_version_source_and_retained() -> None:
    lines = status_lines({"models": [_entry(retained=[2, 1], created="2026-12-01")]})
    assert lines == [
        "ranker: active 3 (activated -, created 2026-12-01)",
        "  source    gs://b/ranker (server: triton)",
        "  retained  2, 1",
    ]


def test_what_waits_is_refused_or_failed_is_said_in_its_own_line() -> None:
    lines = status_lines(
        {
            "models": [
                _entry(
                    confirmed=False,
                    waiting={"version": 4, "since": "12:00", "reason": "outside the window"},
                    refused={"5": "sha256 mismatch in a.bin"},
                    unknown_outcomes={"6": 2},
                    pinned=3,
                    last_error="gs://b: 503",
                )
            ]
        }
    )
    assert "  unconfirmed: the server has not confirmed the active revision yet" in lines
    assert "  waiting   4 since 12:00: outside the window" in lines
    assert "  refused   5: sha256 mismatch in a.bin" in lines
    assert "  no verdict 6: 2 rollback(s) without the server's verdict" in lines
    assert "  pinned    3" in lines
    assert "  error     gs://b: 503" in lines


def test_a_failed_rollback_outranks_unconfirmed() -> None:
    lines = status_lines({"models": [_entry(rollback_failed=True, confirmed=False)]})
    assert any(line.startswith("  ROLLBACK FAILED") for line in lines)
    assert not any("unconfirmed" in line for line in lines)


def test_a_channel_with_a_halted_canary_says_so() -> None:
    channel = {
        "channel": "prod",
        "target": 7,
        "stable": 6,
        "canary": 7,
        "percent": 12.5,
        "in_cohort": True,
        "halted": True,
    }
    lines = status_lines({"models": [_entry(channel=channel)]})
    assert (
        "  channel   prod asks for 7 (stable 6; canary 7 at 12.5 %, this host in its cohort, "
        "HALTED)"
    ) in lines


def test_no_models_is_no_lines() -> None:
    assert status_lines({"models": []}) == []


def test_a_version_that_is_a_unix_time_shows_its_date() -> None:
    lines = status_lines({"models": [_entry(active_version=1765000000)]})
    assert lines[0].startswith("ranker: active 1765000000 (2025-12-06 05:46 UTC)")
