"""Reports: what each host's server said about a version, written to the bucket.

With ``report = true`` a sidecar writes ``<source>/_reports/<version>/<identity>.json``
after each activation outcome: ``confirmed``, ``rolled_back`` (with the server's
reason) or ``refused`` (the revision failed a check before or after download). The
reports of a channel's canary are what halts it fleet-wide (modelsync.channel), and
what ``modelsync release status`` counts.

A failure is also written as ``_reports/<version>/failed/<identity>.json``, so that
a sidecar counts failures from one listing without reading any report: with 10,000
hosts and a 500-host cohort, reading every report would be 5 million GETs per
canary (bench/fleet_sim.py). Anyone who can write under ``_reports/`` can halt a
canary (the safe direction) but cannot make a host adopt anything. ``release
status`` reads the reports themselves, bounded: only new or changed ones, each at
most MAX_REPORT_BYTES, at most MAX_READS_PER_PASS per call.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelsync.cancel import CancelToken
from modelsync.manifest import MAX_VERSION
from modelsync.sources.control import Control, ControlStore, report_prefix

__all__ = [
    "FAILED_OUTCOMES",
    "Outcome",
    "Report",
    "ReportBook",
    "Tally",
    "failed_hosts",
    "failure_key",
    "report_key",
    "write_report",
]

MAX_REPORT_BYTES = 4096
MAX_READS_PER_PASS = 2000
Outcome = Literal["confirmed", "rolled_back", "refused"]
FAILED_OUTCOMES = ("rolled_back", "refused")


class Report(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    identity: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    model: str = Field(max_length=128)
    version: int = Field(ge=1, le=MAX_VERSION)
    outcome: Outcome
    reason: str = Field(default="", max_length=2000)
    at: float = 0.0

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(), sort_keys=True) + "\n").encode()


def report_key(version: int, identity: str) -> str:
    return f"{report_prefix(version)}{identity}.json"


def failure_key(version: int, identity: str) -> str:
    return f"{report_prefix(version)}failed/{identity}.json"


def failed_hosts(listed: Iterable[str], version: int) -> set[str]:
    """The hosts with a failure marker among the listed keys of ``version``'s reports."""
    marker = f"{report_prefix(version)}failed/"
    return {k[len(marker) : -len(".json")] for k in listed if k.startswith(marker)}


@dataclass(frozen=True)
class Tally:
    """A version's reports as read by one tally."""

    reports: tuple[Report, ...]
    # Objects under the prefix that are not reports (malformed, misnamed, too large).
    ignored: int

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.reports if r.outcome == outcome)

    @property
    def failures(self) -> int:
        return sum(1 for r in self.reports if r.outcome in FAILED_OUTCOMES)


class ReportBook:
    """Reads a version's reports for `release status`, keeping each one until its tag
    changes (a second tally of unchanged reports is one listing). Sidecars do not
    read reports: they count failure markers (``failed_hosts``). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (source url, version) -> key -> (tag, report or None when unusable)
        self._seen: dict[tuple[str, int], dict[str, tuple[str, Report | None]]] = {}

    def tally(self, source: ControlStore, model: str, version: int, cancel: CancelToken) -> Tally:
        listed = source.list_control(report_prefix(version), cancel)
        with self._lock:
            known = dict(self._seen.get((source.url, version), {}))
        fresh: dict[str, tuple[str, Report | None]] = {}
        reads = 0
        for key, tag in sorted(listed.items()):
            if "/failed/" in key:
                continue  # markers: counted from the listing (failed_hosts)
            if key in known and known[key][0] == tag:
                fresh[key] = known[key]
                continue
            if reads >= MAX_READS_PER_PASS:
                continue  # the rest next pass: a flood of reports cannot stall a pass
            reads += 1
            fresh[key] = (tag, self._read(source, key, model, version, cancel))
        with self._lock:
            # Only the versions a channel still names are worth keeping.
            self._seen = {k: v for k, v in self._seen.items() if k[0] != source.url}
            self._seen[(source.url, version)] = fresh
        reports = tuple(r for _, r in fresh.values() if r is not None)
        return Tally(reports, len(fresh) - len(reports))

    @staticmethod
    def _read(
        source: ControlStore, key: str, model: str, version: int, cancel: CancelToken
    ) -> Report | None:
        try:
            got = source.get_control(key, MAX_REPORT_BYTES, None, cancel)
        except Exception:  # a report that cannot be read is not counted
            return None
        if not isinstance(got, Control):
            return None
        try:
            report = Report.model_validate_json(got.data)
        except (ValidationError, ValueError):
            return None
        # A report counts for the object it is stored as, nothing else.
        expected = f"{report_prefix(version)}{report.identity}.json"
        if key != expected or report.version != version or report.model != model:
            return None
        return report


def write_report(
    source: ControlStore,
    model: str,
    version: int,
    identity: str,
    outcome: Outcome,
    reason: str = "",
    wall: Callable[[], float] = time.time,
) -> None:
    """Store this host's report on ``version`` (replacing its earlier one)."""
    report = Report(
        identity=identity,
        model=model,
        version=version,
        outcome=outcome,
        reason=reason[:2000],
        at=wall(),
    )
    source.put_control(report_key(version, identity), report.to_bytes())
    if outcome in FAILED_OUTCOMES:
        source.put_control(failure_key(version, identity), report.to_bytes())
