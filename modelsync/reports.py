"""Reports: what each host's server said about a version, written to the bucket.

With ``report = true`` a sidecar writes ``<source>/_reports/<version>/<identity>.json``
after each activation outcome: ``confirmed``, ``rolled_back`` (with the server's
reason) or ``refused`` (the revision failed a check before or after download). The
reports of a channel's canary are what halts it fleet-wide (modelsync.channel), and
what ``modelsync release status`` counts.

A failure is also written as a marker, ``_reports/<version>/failed/<nonce>/<identity>.json``
(``<nonce>`` is the canary's, from its pointer; ``failed/<identity>.json`` when the
failed version was no canary with a nonce), so that a sidecar counts failures from one
listing without reading any report: with 10,000 hosts and a 500-host cohort, reading
every report would be 5 million GETs per canary (bench/fleet_sim.py). Only the markers
under the running canary's nonce count, once per identity, and any other key is
ignored: a marker of an earlier canary of the same version, or one planted before the
canary started (its nonce is random), never halts it. Anyone who can write under
``_reports/`` can halt a canary (the safe direction) but cannot make a host adopt
anything. ``release status`` reads the reports themselves, bounded: only new or
changed ones, each at most MAX_REPORT_BYTES, at most MAX_READS_PER_PASS per call; and
the failures from the markers, so that a report rewritten ``confirmed`` hides none.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelsync.cancel import CancelToken
from modelsync.manifest import MAX_VERSION
from modelsync.sources.control import Control, ControlStore, report_prefix
from modelsync.state import ChannelInfo
from modelsync.verdicts import LiveChecks, SmokeVerdict

__all__ = [
    "FAILED_OUTCOMES",
    "Outcome",
    "Report",
    "ReportBook",
    "Tally",
    "failed_hosts",
    "failure_key",
    "failure_markers",
    "report_key",
    "write_report",
]

# Room for the live checks' figures and reasons beside the outcome's reason.
MAX_REPORT_BYTES = 16384
MAX_READS_PER_PASS = 2000
Outcome = Literal["confirmed", "rolled_back", "refused"]
FAILED_OUTCOMES = ("rolled_back", "refused")
_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Report(BaseModel):
    model_config = ConfigDict(
        extra="ignore", strict=True, frozen=True, allow_inf_nan=False, defer_build=True
    )

    identity: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    model: str = Field(max_length=128)
    version: int = Field(ge=1, le=MAX_VERSION)
    outcome: Outcome
    reason: str = Field(default="", max_length=2000)
    at: float = Field(default=0.0, ge=0, le=MAX_VERSION)
    # The nonce of the canary this report is about ("" when none).
    canary: str = Field(default="", pattern=r"^([0-9a-f]{16})?$")
    # The live checks of the version on this host (smoke, bake): what the halt rules on
    # the cohort's figures read (modelsync.sync.policy.halt).
    live: LiveChecks | None = None

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(), sort_keys=True) + "\n").encode()


def report_key(version: int, identity: str) -> str:
    return f"{report_prefix(version)}{identity}.json"


def failure_key(version: int, identity: str, nonce: str = "") -> str:
    return f"{_marker_prefix(version, nonce)}{identity}.json"


def _marker_prefix(version: int, nonce: str) -> str:
    return f"{report_prefix(version)}failed/{nonce + '/' if nonce else ''}"


def failed_hosts(listed: Iterable[str], version: int, nonce: str = "") -> set[str]:
    """The hosts with a failure marker of the canary ``nonce`` of ``version`` among the
    listed keys (each host once; keys that are not such a marker are ignored)."""
    marker = _marker_prefix(version, nonce)
    found = set()
    for key in listed:
        if key.startswith(marker) and key.endswith(".json"):
            identity = key[len(marker) : -len(".json")]
            if _IDENTITY.fullmatch(identity):
                found.add(identity)
    return found


def failure_markers(
    source: ControlStore, model: str, version: int, nonce: str, cancel: CancelToken
) -> dict[str, str]:
    """The hosts that failed the canary ``nonce`` of ``version`` -> what their marker
    says (its outcome and reason; "" when it cannot be read). At most
    MAX_READS_PER_PASS markers are read; the rest count with no reason."""
    listed = source.list_control(report_prefix(version), cancel)
    found: dict[str, str] = {}
    for identity in sorted(failed_hosts(listed, version, nonce)):
        found[identity] = ""
        if len(found) > MAX_READS_PER_PASS:
            continue
        report = ReportBook._read(
            source, failure_key(version, identity, nonce), model, version, cancel
        )
        if report is not None and report.identity == identity:
            found[identity] = f"{report.outcome}: {report.reason}"
    return found


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
        expected = {report_key(version, report.identity)}
        if report.outcome in FAILED_OUTCOMES:
            expected.add(failure_key(version, report.identity, report.canary))
        if key not in expected or report.version != version or report.model != model:
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
    channel: ChannelInfo | None = None,
    live: LiveChecks | None = None,
) -> None:
    """Store this host's report on ``version`` (replacing its earlier one); a failure
    also as a marker, under the canary's nonce when ``version`` is the canary the
    ``channel`` named at this pass."""
    nonce = channel.nonce if channel is not None and channel.canary == version else ""
    report = Report(
        identity=identity,
        model=model,
        version=version,
        outcome=outcome,
        reason=reason[:2000],
        at=wall(),
        canary=nonce,
        live=_bounded(live),
    )
    source.put_control(report_key(version, identity), report.to_bytes())
    if outcome in FAILED_OUTCOMES:
        source.put_control(failure_key(version, identity, nonce), report.to_bytes())


def _bounded(live: LiveChecks | None) -> LiveChecks | None:
    """``live`` with its smoke reason cut so that a report stays under MAX_REPORT_BYTES
    (the reason is in the report's own ``reason`` too)."""
    if live is None or live.smoke is None or len(live.smoke.reason) <= 600:
        return live
    smoke = SmokeVerdict(
        verdict=live.smoke.verdict, requests=live.smoke.requests, reason=live.smoke.reason[:600]
    )
    return LiveChecks(smoke=smoke, bake=live.bake)
