"""Per-model bookkeeping that cannot be read off the store's layout.

What is *active* is never recorded here: it is the target of ``current`` on disk.
This file holds what the layout cannot say: refused versions, a manual pin, the
last outcome, and the journal of an activation in progress (``pending``), which is
what lets a pass after a crash finish or undo the interrupted one.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from modelsync.errors import StoreError
from modelsync.fsutil import atomic_write_bytes, read_regular
from modelsync.gates import Verdict
from modelsync.manifest import MAX_VERSION, parse_version
from modelsync.oneline import one_line
from modelsync.verdicts import LiveChecks

__all__ = [
    "DEFERRED_REASON_CHARS",
    "HISTORY_KEEP",
    "LIVE_KEEP",
    "METRIC_NAME_LIMIT",
    "OMS_ADMITTED_KEEP",
    "REASON_DROPPED",
    "REFUSED_KEEP",
    "REFUSED_METRICS_KEEP",
    "REFUSED_METRICS_VERSIONS",
    "REFUSED_VERSIONS_KEEP",
    "STATE_LIMIT",
    "ChannelInfo",
    "ChannelMark",
    "Deferrals",
    "HistoryEvent",
    "ModelState",
    "Pending",
    "Waiting",
]

Phase = Literal["activating", "rolling_back"]


@dataclass
class Pending:
    """An activation (or rollback) that started but has not been committed."""

    version: int
    previous: int | None
    phase: Phase = "activating"
    # "quarantine" for a revision the server refused; "cache" for a manual rollback.
    retire_to: Literal["quarantine", "cache"] = "quarantine"
    # Why it is rolled back, and whether the server said so ("failed") or gave no
    # verdict ("unknown"), or loaded it but it failed a live check ("check_failed":
    # smoke requests): journalled so that a rollback finished after a crash still
    # refuses (or counts) the revision.
    reason: str = ""
    verdict: Literal["failed", "unknown", "check_failed", ""] = ""
    # sha256 of the activated tree's manifest: recovery activates that tree only.
    manifest_sha256: str = ""


@dataclass
class ChannelInfo:
    """What the model's release channel said at the last pass (for status and metrics)."""

    channel: str
    stable: int | None
    canary: int | None
    percent: float | None
    in_cohort: bool
    halted: bool
    target: int | None
    # Canary reports counted as failures (rolled back or refused) at that pass.
    failures: int = 0
    # The canary's nonce (its failure markers are filed under it) and the pointer's seq.
    nonce: str = ""
    seq: int = 0
    # The halt rule that halted the canary ("" when not halted), and what it saw.
    halt_rule: str = ""
    halt_reason: str = ""


@dataclass(frozen=True)
class ChannelMark:
    """The newest signed pointer of a channel this host accepted (modelsync.channel_trust):
    what a replayed older pointer is refused against."""

    seq: int
    # The newest stable version accepted, and the seq of the pointer that set it: an
    # older stable is accepted only from a pointer signed as a rollback after that.
    stable: int | None = None
    stable_seq: int = 0


@dataclass
class Waiting:
    """A newer revision found but not brought in, and why (the server does not answer)."""

    version: int
    reason: str
    since: float


@dataclass
class Deferrals:
    """What earlier passes could not fetch (modelsync.sync.charge), as one range: every
    listed version from ``floor`` up to ``newest`` was tried and passed over (deferred,
    or refused). A range, not a list, so that it stays this size whatever a bucket
    writer publishes; later passes skip it and go on below ``floor`` until
    ``retry_at``, and try ``newest`` every pass (context.PassContext.passed_over)."""

    newest: int
    floor: int
    # Why ``newest`` could not be fetched (cut to DEFERRED_REASON_CHARS).
    reason: str
    # Wall-clock time after which the whole range is tried again from the top.
    retry_at: float


# A deferral's reason as kept in the state file (it may quote bucket text).
DEFERRED_REASON_CHARS = 500
# Events kept in a model's history (the oldest are dropped).
HISTORY_KEEP = 100
# Revisions whose live checks are kept (the newest versions).
LIVE_KEEP = 10
# OMS revisions whose signed file list is remembered (the newest versions): 1,000 of
# them with 10-digit versions add 86 KB to the state file (measured), read in ~1 ms.
OMS_ADMITTED_KEEP = 1000
# Refused versions whose reason is kept (the highest): the state file must not grow
# with every refused revision a bucket writer can publish. Below them a refusal is
# kept without its words (REASON_DROPPED), up to REFUSED_VERSIONS_KEEP versions, so
# that a revision refused once, however long ago, is not fetched and shown to the
# server again each pass (for a revision the server refused, that would be one more
# activation rolled back per pass). Past that many, the lowest are forgotten: a
# forgotten one that is a candidate again passes every check again, so it is refused
# again, never served unchecked; what it costs is that second look.
REFUSED_KEEP = 100
REFUSED_VERSIONS_KEEP = 10_000
REASON_DROPPED = "(reason not kept)"
# Of those, the newest whose manifest metrics are kept for the status page, how many
# metrics each (the first by name), and how long a metric's name is shown.
REFUSED_METRICS_VERSIONS = 10
REFUSED_METRICS_KEEP = 50
METRIC_NAME_LIMIT = 100
# A state file is tens of KiB; more is not a file modelsync wrote. Every text in it that
# can come from outside (a refusal's reason quotes a bucket, the server's words) is cut
# to one line of LINE_LIMIT characters when saved, and every map or list that grows
# with what a bucket holds is capped above, so the worst case (every cap full, every
# character JSON-escaped to 12 bytes) stays under this: tests/test_state.py computes it.
STATE_LIMIT = 4 << 20
Event = Literal["activated", "rolled_back", "refused", "manual_rollback"]


@dataclass
class HistoryEvent:
    """One thing that happened to a model's served revision, for people to read."""

    at: float
    event: Event
    version: int
    previous: int | None = None
    reason: str = ""


@dataclass
class ModelState:
    refused: dict[int, str] = field(default_factory=dict)
    pinned: int | None = None
    activated_at: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    rollback_failed: bool = False
    # False while the active revision stands without the server having confirmed it
    # (activated when no server answered: an init container); each pass asks again.
    confirmed: bool = True
    # Rollbacks without a verdict per version; at unknown_attempts it is refused.
    unknown: dict[int, int] = field(default_factory=dict)
    # What the server last said about a failure (its own words).
    server_reason: str | None = None
    pending: Pending | None = None
    channel: ChannelInfo | None = None
    history: list[HistoryEvent] = field(default_factory=list)
    # Manifest metrics of revisions refused before download (for the status page).
    refused_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    # sha256 of the manifest each local revision was fetched with, from the bucket:
    # a retained copy is admitted again only with that manifest (modelsync.sync.admit).
    manifests: dict[int, str] = field(default_factory=dict)
    # A newer revision that waits for the server (None when nothing waits).
    waiting: Waiting | None = None
    # Channel name -> the newest signed pointer accepted (require_signature only).
    channel_marks: dict[str, ChannelMark] = field(default_factory=dict)
    # The relative gate's last verdict on a candidate (modelsync.gates), for the status page.
    gate: Verdict | None = None
    # What the live checks said of the newest revisions that loaded (modelsync.verdicts).
    live_checks: dict[int, LiveChecks] = field(default_factory=dict)
    # The fingerprint of the files each OMS revision admitted here signs (SignedFiles.
    # fingerprint): when oms_subject does not bind the version, the same files under
    # another version are a replay (modelsync.sync.policy.oms_revision). Newest
    # OMS_ADMITTED_KEEP versions.
    oms_admitted: dict[int, str] = field(default_factory=dict)
    # Versions earlier passes could not fetch, skipped until their retry time.
    deferrals: Deferrals | None = None

    def record_oms(self, version: int, fingerprint: str) -> None:
        """Remember what OMS revision ``version`` signs (saved with the state by the
        caller); only the newest OMS_ADMITTED_KEEP versions are kept."""
        self.oms_admitted[version] = fingerprint
        for stale in sorted(self.oms_admitted)[:-OMS_ADMITTED_KEEP]:
            del self.oms_admitted[stale]

    def record_live(self, version: int, checks: LiveChecks) -> None:
        """Keep ``version``'s live checks (a check not in ``checks`` keeps its
        earlier verdict); only the newest LIVE_KEEP versions are kept."""
        old = self.live_checks.get(version)
        if old is not None:
            checks = LiveChecks(smoke=checks.smoke or old.smoke, bake=checks.bake or old.bake)
        self.live_checks[version] = checks
        for stale in sorted(self.live_checks)[:-LIVE_KEEP]:
            del self.live_checks[stale]

    def record(
        self, at: float, event: Event, version: int, previous: int | None = None, reason: str = ""
    ) -> None:
        """Add to the history (saved with the state by the caller); bounded."""
        self.history.append(HistoryEvent(at, event, version, previous, one_line(reason)))
        del self.history[:-HISTORY_KEEP]

    def record_refused(
        self, version: int, reason: str, metrics: dict[str, float] | None = None
    ) -> None:
        """Refuse ``version`` for good with ``reason`` (and keep its manifest's metrics
        for the status page); saved with the state by the caller, whose save bounds it."""
        self.refused[version] = one_line(reason)
        if metrics:
            kept = sorted(metrics.items())[:REFUSED_METRICS_KEEP]
            self.refused_metrics[version] = {one_line(k, METRIC_NAME_LIMIT): v for k, v in kept}

    def bound(self) -> None:
        """Cut what outside text and outside counts put here to the caps above (save
        calls it: whoever set a field, the file written stays under STATE_LIMIT)."""
        for stale in sorted(self.refused)[:-REFUSED_VERSIONS_KEEP]:
            del self.refused[stale]
        for version in sorted(self.refused)[:-REFUSED_KEEP]:
            self.refused[version] = REASON_DROPPED
        for version, reason in self.refused.items():
            self.refused[version] = one_line(reason)
        # Unknown verdicts are counted per version activated: as many as refusals at most.
        for stale in sorted(self.unknown)[:-REFUSED_KEEP]:
            del self.unknown[stale]
        keep = sorted(v for v in self.refused_metrics if v in self.refused)
        self.refused_metrics = {
            v: {
                one_line(k, METRIC_NAME_LIMIT): n
                for k, n in sorted(self.refused_metrics[v].items())[:REFUSED_METRICS_KEEP]
            }
            for v in keep[-REFUSED_METRICS_VERSIONS:]
        }
        for stale in sorted(self.live_checks)[:-LIVE_KEEP]:
            del self.live_checks[stale]
        for stale in sorted(self.oms_admitted)[:-OMS_ADMITTED_KEEP]:
            del self.oms_admitted[stale]
        del self.history[:-HISTORY_KEEP]
        for event in self.history:
            event.reason = one_line(event.reason)
        if self.last_error is not None:
            self.last_error = one_line(self.last_error)
        if self.server_reason is not None:
            self.server_reason = one_line(self.server_reason)
        if self.pending is not None:
            self.pending.reason = one_line(self.pending.reason)
        if self.waiting is not None:
            self.waiting.reason = one_line(self.waiting.reason)
        if self.channel is not None:
            self.channel.halt_reason = one_line(self.channel.halt_reason)
        if self.deferrals is not None:
            self.deferrals.reason = one_line(self.deferrals.reason, DEFERRED_REASON_CHARS)

    @classmethod
    def load(cls, path: Path) -> ModelState:
        """The saved state, or a fresh one when none was saved yet."""
        try:
            doc: dict[str, Any] = json.loads(read_regular(path, STATE_LIMIT))
        except FileNotFoundError:
            return cls()
        except StoreError as exc:
            raise StoreError(f"{exc}; move it aside") from None
        except (OSError, ValueError, RecursionError) as exc:
            raise StoreError(f"{path}: unreadable state file ({exc}); move it aside") from exc
        try:
            # As strict as the configuration: a value of the wrong type or range (a
            # version "../../outside") never reaches a path or a comparison.
            state = _adapter().validate_python(_with_int_keys(doc))
        except (ValidationError, ValueError, TypeError, AttributeError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else None
            what = (
                f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}" if first else str(exc)
            )
            raise StoreError(f"{path}: malformed state file ({what}); move it aside") from None
        # Bounded when read too: a file written by hand (or by an older modelsync) with
        # a long history never makes every later save carry it.
        state.bound()
        marks = state.channel_marks.values()
        numbers = [n for m in marks for n in (m.seq, m.stable, m.stable_seq) if n is not None]
        if not all(0 <= n <= MAX_VERSION for n in numbers):
            raise StoreError(f"{path}: malformed state file (channel_marks); move it aside")
        versions = [
            *state.refused,
            *state.unknown,
            *state.live_checks,
            *state.oms_admitted,
            state.pinned,
            *((state.deferrals.newest, state.deferrals.floor) if state.deferrals else ()),
        ]
        for version in [*versions, *_pending(state)]:
            if version is not None and not 0 < version <= MAX_VERSION:
                raise StoreError(f"{path}: malformed state file (version {version}); move it aside")
        return state

    def save(self, path: Path) -> None:
        self.bound()
        doc = asdict(self)
        doc["refused"] = {str(k): v for k, v in sorted(self.refused.items())}
        doc["unknown"] = {str(k): v for k, v in sorted(self.unknown.items())}
        doc["refused_metrics"] = {str(k): v for k, v in sorted(self.refused_metrics.items())}
        doc["manifests"] = {str(k): v for k, v in sorted(self.manifests.items())}
        doc["oms_admitted"] = {str(k): v for k, v in sorted(self.oms_admitted.items())}
        doc["live_checks"] = {
            str(k): v.model_dump(mode="json", exclude_none=True)
            for k, v in sorted(self.live_checks.items())
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def _with_int_keys(doc: Any) -> Any:
    """JSON object keys are strings; the version-keyed maps want ints (strictly parsed)."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    doc = {k: v for k, v in doc.items() if k in ModelState.__dataclass_fields__}
    for key in (
        "refused",
        "unknown",
        "refused_metrics",
        "manifests",
        "live_checks",
        "oms_admitted",
    ):
        value = doc.get(key, {})
        # The one version grammar (manifest.parse_version): isdigit() also takes "09"
        # and non-ASCII digits ("\u0669" is 9 to int(), "\u00b2" makes int() raise).
        if not isinstance(value, dict):
            raise ValueError(f"{key}: not a map of versions")
        versions = {k: parse_version(k) for k in value}
        bad = next((k for k, v in versions.items() if v is None), None)
        if bad is not None:
            raise ValueError(f"{key}: not a map of versions ({bad!r} is not a version)")
        doc[key] = {versions[k]: v for k, v in value.items()}
    return doc


def _pending(state: ModelState) -> list[int | None]:
    pending = state.pending
    return [pending.version, pending.previous] if pending is not None else []


@functools.cache
def _adapter() -> TypeAdapter[ModelState]:
    # Built at the first state read, not at import: commands that read no state
    # (publish, verify, --help) do not pay for its validator.
    return TypeAdapter(ModelState)
