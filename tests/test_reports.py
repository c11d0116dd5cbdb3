"""Reports in the bucket: counted only when they are what they claim to be."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.outcome import Outcome, PassResult
from modelsync.reports import (
    MAX_READS_PER_PASS,
    Report,
    ReportBook,
    failed_hosts,
    failure_markers,
    write_report,
)
from modelsync.sources import open_source
from modelsync.sources.control import Control
from modelsync.state import ChannelInfo
from modelsync.sync.report import outcomes_of
from tests.backends import GcsBackend
from tests.faultproxy import FaultProxy
from tests.properties import HOSTILE


def _report(identity: str, version: int = 5, outcome: str = "confirmed", model: str = "m") -> bytes:
    return Report.model_validate(
        {"identity": identity, "model": model, "version": version, "outcome": outcome}
    ).to_bytes()


def test_tally_counts_real_reports_and_ignores_the_rest(tmp_path: Path) -> None:
    source = open_source(f"file://{tmp_path}/bucket/m")
    write_report(source, "m", 5, "a", "confirmed")
    write_report(source, "m", 5, "b", "rolled_back", "bad tensor shape")
    write_report(source, "m", 5, "c", "refused", "gate: auc = 0.1 is below 0.7")
    hostile = {
        "_reports/5/d.json": _report("someone-else"),  # claims another host's name
        "_reports/5/e.json": _report("e", version=6),  # another version
        "_reports/5/f.json": _report("f", model="other"),  # another model
        "_reports/5/g.json": b"<script>",  # not JSON
        "_reports/5/h.json": b"{" * 10_000,  # too large
        "_reports/5/i.json": b'{"identity": "i", "model": "m", "version": 5, "outcome": "ok"}',
    }
    for key, data in hostile.items():
        source.put_control(key, data)
    tally = ReportBook().tally(source, "m", 5, CancelToken())
    assert sorted(r.identity for r in tally.reports) == ["a", "b", "c"]
    assert (tally.count("confirmed"), tally.failures, tally.ignored) == (1, 2, len(hostile))
    got = source.get_control("_reports/5/b.json", 4096)
    assert isinstance(got, Control) and b"bad tensor shape" in got.data


def test_a_pass_reads_only_new_reports(gcs_emulator: str, gcs_bucket: str) -> None:
    """The second tally of unchanged reports is one listing (counted at the proxy)."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    proxy = FaultProxy(int(gcs_emulator.rsplit(":", 1)[1])).start()
    try:
        source = open_source(backend.url, backend.options(proxy.url))
        for host in ("a", "b", "c"):
            write_report(source, "m", 5, host, "confirmed")
        book = ReportBook()
        proxy.reset_counts()
        assert len(book.tally(source, "m", 5, CancelToken()).reports) == 3
        assert len(proxy.requests) > 1
        proxy.reset_counts()
        assert len(book.tally(source, "m", 5, CancelToken()).reports) == 3
        assert len(proxy.requests) == 1, proxy.requests
        write_report(source, "m", 5, "b", "rolled_back", "oom")
        proxy.reset_counts()
        assert book.tally(source, "m", 5, CancelToken()).failures == 1
        assert 1 < len(proxy.requests) <= 3  # the listing and b's report
        source.close()
    finally:
        proxy.stop()


def test_reads_per_pass_are_bounded(tmp_path: Path) -> None:
    """A flood of report objects costs at most MAX_READS_PER_PASS reads a pass."""
    source = open_source(f"file://{tmp_path}/bucket/m")
    directory = tmp_path / "bucket" / "m" / "_reports" / "5"
    directory.mkdir(parents=True)
    for i in range(MAX_READS_PER_PASS + 50):
        (directory / f"h{i}.json").write_bytes(_report(f"h{i}"))
    book = ReportBook()
    assert len(book.tally(source, "m", 5, CancelToken()).reports) == MAX_READS_PER_PASS
    assert len(book.tally(source, "m", 5, CancelToken()).reports) == MAX_READS_PER_PASS + 50


def test_outcomes_a_pass_reports() -> None:
    activated = PassResult("m", Outcome.ACTIVATED, 5, candidate=5)
    assert outcomes_of(activated, {}) == [(5, "confirmed", "")]
    rolled = PassResult("m", Outcome.ROLLED_BACK, 4, candidate=5, error="oom", refused=[5])
    assert outcomes_of(rolled, {5: "server could not load it: oom"}) == [(5, "rolled_back", "oom")]
    refused = PassResult("m", Outcome.FAILED, 4, candidate=6, refused=[6], error="gate")
    assert outcomes_of(refused, {6: "gate: auc"}) == [(6, "refused", "gate: auc")]
    assert outcomes_of(PassResult("m", Outcome.UNCHANGED, 4), {}) == []
    ModelConfig(name="m", source="file:///b/m", channel="prod", report=True)  # valid config


def test_failures_are_counted_from_the_listing(tmp_path: Path) -> None:
    """A failure leaves a marker beside the report; hosts count markers, not bodies."""
    source = open_source(f"file://{tmp_path}/bucket/m")
    write_report(source, "m", 5, "a", "confirmed")
    write_report(source, "m", 5, "b", "rolled_back", "oom")
    write_report(source, "m", 5, "c", "refused", "gate")
    write_report(source, "m", 6, "d", "rolled_back", "oom")
    listed = source.list_control("_reports/5/")
    assert sorted(listed) == [
        "_reports/5/a.json",
        "_reports/5/b.json",
        "_reports/5/c.json",
        "_reports/5/failed/b.json",
        "_reports/5/failed/c.json",
    ]
    assert failed_hosts(listed, 5) == {"b", "c"}
    assert failed_hosts(listed, 6) == set()


def test_markers_count_for_their_canary_only(tmp_path: Path) -> None:
    """Only markers under the canary's nonce count, once per host; a marker of another
    canary of the version, one without a nonce, and junk keys are ignored."""
    source = open_source(f"file://{tmp_path}/bucket/m")
    nonce, other = "0123456789abcdef", "fedcba9876543210"
    info = ChannelInfo("prod", 4, 5, 10.0, True, False, 5, nonce=nonce)
    write_report(source, "m", 5, "b", "rolled_back", "oom", channel=info)
    write_report(source, "m", 5, "b", "refused", "again", channel=info)  # same host
    write_report(source, "m", 4, "s", "refused", "gate", channel=info)  # not the canary
    write_report(source, "m", 5, "old", "rolled_back", "oom", channel=replace(info, nonce=other))
    write_report(source, "m", 5, "planted", "rolled_back", "oom")
    listed = dict(source.list_control("_reports/5/"))
    junk = [
        f"_reports/5/failed/{nonce}/.json",
        f"_reports/5/failed/{nonce}/x/y.json",
        f"_reports/5/failed/{nonce}/-bad.json",
        f"_reports/5/failed/{nonce}/c.txt",
    ]
    listed.update(dict.fromkeys(junk, "t"))
    assert f"_reports/5/failed/{nonce}/b.json" in listed
    assert "_reports/4/failed/s.json" in source.list_control("_reports/4/")
    assert failed_hosts(listed, 5, nonce) == {"b"}
    assert failed_hosts(listed, 5, other) == {"old"}
    assert failed_hosts(listed, 5) == {"planted"}
    markers = failure_markers(source, "m", 5, nonce, CancelToken())
    assert markers == {"b": "refused: again"}


_REPORTS = HOSTILE | st.fixed_dictionaries(
    {"identity": st.just("a") | HOSTILE, "model": st.just("m") | HOSTILE},
    optional={
        "version": st.just(5) | HOSTILE,
        "outcome": st.sampled_from(["confirmed", "refused"]) | HOSTILE,
        "reason": HOSTILE,
        "at": HOSTILE,
        "canary": HOSTILE,
    },
)


@settings(max_examples=300, deadline=None)
@given(doc=_REPORTS)
def test_hostile_reports_are_not_counted(doc: object) -> None:
    """Any JSON value stored as a report is counted only when it is a valid report of
    its key; never an exception."""
    source = _MemoryStore({"_reports/5/a.json": json.dumps(doc).encode()})
    tally = ReportBook().tally(source, "m", 5, CancelToken())
    assert len(tally.reports) + tally.ignored == 1


class _MemoryStore:
    url = "mem://m"

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_control(
        self, key: str, limit: int, tag: str | None = None, cancel: CancelToken | None = None
    ) -> Control | None:
        data = self.objects.get(key)
        return Control(data, "t") if data is not None else None

    def put_control(self, key: str, data: bytes, *, match: str | None = None) -> str:
        self.objects[key] = data
        return "t"

    def list_control(self, prefix: str, cancel: CancelToken | None = None) -> dict[str, str]:
        return {k: "t" for k in self.objects if k.startswith(prefix)}


def test_a_report_carries_the_live_checks_and_stays_readable(tmp_path: Path) -> None:
    """A rolled-back report carries the smoke verdict (its reason cut to stay under the
    report size limit) and is counted as a failure by a reader."""
    from modelsync.verdicts import LiveChecks, SmokeVerdict

    source = open_source(f"file://{tmp_path}/bucket/m")
    reason = "request 1: outputs[0].data[0] = nan, expected 0.71 ± 0.01 " * 40
    live = LiveChecks(smoke=SmokeVerdict(verdict="failed", requests=1, reason=reason[:2000]))
    write_report(source, "m", 5, "a", "rolled_back", reason, live=live)
    tally = ReportBook().tally(source, "m", 5, CancelToken())
    (report,) = tally.reports
    assert report.live is not None and report.live.smoke is not None
    assert report.live.smoke.verdict == "failed"
    assert report.live.smoke.reason.startswith("request 1: outputs[0].data[0] = nan")
    assert tally.failures == 1
