"""The bake in the pass (modelsync.sync.bake): a scripted server that confirms loads and
serves Prometheus text whose counters the test drives; the wall clock is the test's, so
a 5-minute window passes at once."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelsync.bakejudge import BakeConfig
from modelsync.cancel import CancelToken
from modelsync.config import ConfirmConfig, ModelConfig, default_state_dir
from modelsync.metricsread import MetricSeries
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.daemonproc import DaemonProcess
from tests.helpers import check_invariants, model_files, put_revision, run_cli, snapshot
from tests.httpstub import http_stub

WINDOW = 300.0
SERIES = MetricSeries(
    success="model_infer_request_success_total",
    failure="model_infer_request_failure_total",
    duration_sum="model_infer_request_duration_sum",
    duration_count="model_infer_request_duration_count",
)


@dataclass
class Server:
    """Confirms every load it is asked about; counts traffic per served version as
    MLServer does (counters per model and version label)."""

    counters: dict[int, list[float]] = field(default_factory=dict)  # ok, failed, seconds
    lock: threading.Lock = field(default_factory=threading.Lock)
    metrics_up: bool = True
    metrics_hang: threading.Event = field(default_factory=threading.Event)
    metrics_release: threading.Event = field(default_factory=threading.Event)

    def traffic(self, version: int, requests: int, fail_ratio: float, latency: float) -> None:
        with self.lock:
            row = self.counters.setdefault(version, [0.0, 0.0, 0.0])
            failed = round(requests * fail_ratio)
            row[0] += requests - failed
            row[1] += failed
            row[2] += requests * latency

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if path == "/metrics":
            if not self.metrics_up:
                return 503, b"down"
            if self.metrics_hang.is_set():
                self.metrics_release.wait(60)  # accepted, never answered while held
            lines = ["# TYPE model_infer_request_success_total counter"]
            with self.lock:
                for v, (ok, bad, secs) in sorted(self.counters.items()):
                    labels = f'model="ranker",version="{v}"'
                    lines += [
                        f"model_infer_request_success_total{{{labels}}} {ok}",
                        f"model_infer_request_failure_total{{{labels}}} {bad}",
                        f"model_infer_request_duration_sum{{{labels}}} {secs}",
                        f"model_infer_request_duration_count{{{labels}}} {ok + bad}",
                    ]
            return 200, ("\n".join(lines) + "\n").encode()
        version = int(path.rsplit("/", 1)[1])
        return 200, json.dumps({"version": version}).encode()


@contextmanager
def serving() -> Iterator[tuple[Server, str]]:
    server = Server()
    with http_stub(server.answer) as (url, _):
        yield server, url


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _model(bucket: Path, url: str, **bake: object) -> ModelConfig:
    return ModelConfig(
        name="ranker",
        source=f"file://{bucket}",
        confirm=ConfirmConfig.of(
            method="http", url=url + "/v/{version}", json_field="version", period=0.05, timeout=2
        ),
        bake=BakeConfig(window=WINDOW, metrics_url=url + "/metrics", series=SERIES, **bake),  # type: ignore[arg-type]
    )


def _start(tmp_path: Path, bucket: Path, server: Server, clock: Clock) -> tuple[Syncer, Path]:
    """v1 active with a window of healthy traffic behind it; v2 published."""
    store = tmp_path / "store"
    syncer = Syncer(Store(store, store / ".modelsync"), wall_clock=clock)
    put_revision(bucket, 1, model_files(1))
    return syncer, store


def _bake_v2(
    syncer: Syncer, model: ModelConfig, bucket: Path, server: Server, clock: Clock
) -> None:
    assert syncer.sync(model, CancelToken()).active == 1
    server.traffic(1, 1000, 0.01, 0.010)  # the previous revision's window
    clock.now += WINDOW
    assert syncer.sync(model, CancelToken()).outcome is Outcome.UNCHANGED  # one sample
    server.traffic(1, 1000, 0.01, 0.010)
    clock.now += WINDOW
    put_revision(bucket, 2, model_files(2))
    started = syncer.sync(model, CancelToken())
    assert (started.outcome, started.active) == (Outcome.ACTIVATED, 2)
    assert started.bake is not None and started.bake.verdict == "baking"
    assert started.wake_in == WINDOW
    previous = started.bake.previous
    assert previous is not None and previous.requests == 1000
    assert previous.error_ratio == pytest.approx(0.01)
    assert previous.latency_mean_s == pytest.approx(0.010)
    assert previous.window_s == WINDOW


def test_good_revision_baked_and_kept(tmp_path: Path, bucket: Path) -> None:
    """A revision as good as the one before passes at the window's end and stays."""
    clock = Clock()
    with serving() as (server, url):
        syncer, store = _start(tmp_path, bucket, server, clock)
        model = _model(bucket, url)
        _bake_v2(syncer, model, bucket, server, clock)
        server.traffic(2, 500, 0.012, 0.011)
        clock.now += WINDOW / 2
        halfway = syncer.sync(model, CancelToken())
        assert halfway.bake is not None and halfway.bake.verdict == "baking"
        assert halfway.bake.remaining_s == pytest.approx(WINDOW / 2)
        assert halfway.bake.current.requests == 500
        server.traffic(2, 500, 0.012, 0.011)
        clock.now += WINDOW / 2
        done = syncer.sync(model, CancelToken())
    assert done.bake is not None and done.bake.verdict == "passed", done.bake
    assert done.active == 2 and done.refused == []
    assert done.bake.current.requests == 1000
    assert (store / "ranker" / "2").is_dir() and not (store / "ranker" / "1").exists()
    assert check_invariants(store, "ranker").violations == []


@pytest.mark.parametrize(
    ("fail_ratio", "latency", "words"),
    [(0.2, 0.010, "error ratio 0.2000"), (0.01, 0.030, "mean latency 30.0 ms")],
)
def test_live_regression_rolled_back_with_figures(
    tmp_path: Path, bucket: Path, fail_ratio: float, latency: float, words: str
) -> None:
    """20 % failed requests, or 3x the latency, during the bake: at the window's end v1 is
    served again byte for byte and v2 refused with the figures in the reason."""
    clock = Clock()
    with serving() as (server, url):
        syncer, store = _start(tmp_path, bucket, server, clock)
        model = _model(bucket, url)
        assert syncer.sync(model, CancelToken()).active == 1
        before = snapshot(store / "ranker")
        server.traffic(1, 1000, 0.01, 0.010)
        clock.now += WINDOW
        syncer.sync(model, CancelToken())
        server.traffic(1, 1000, 0.01, 0.010)
        clock.now += WINDOW
        put_revision(bucket, 2, model_files(2))
        assert syncer.sync(model, CancelToken()).active == 2
        server.traffic(2, 1000, fail_ratio, latency)
        clock.now += WINDOW
        result = syncer.sync(model, CancelToken())
    assert (result.outcome, result.active, result.refused) == (Outcome.ROLLED_BACK, 1, [2])
    assert result.bake is not None and result.bake.verdict == "failed"
    assert words in result.bake.reason and words in (result.error or "")
    state = Store(store, store / ".modelsync").model("ranker").load_state()
    assert words in state.refused[2]
    assert snapshot(store / "ranker") == before
    assert check_invariants(store, "ranker").violations == []


def test_newer_revision_waits_for_the_verdict(tmp_path: Path, bucket: Path) -> None:
    """While v2 bakes, v3 is not brought in; once v2 passes, v3 is."""
    clock = Clock()
    with serving() as (server, url):
        syncer, _ = _start(tmp_path, bucket, server, clock)
        model = _model(bucket, url)
        _bake_v2(syncer, model, bucket, server, clock)
        put_revision(bucket, 3, model_files(3))
        clock.now += 10
        held = syncer.sync(model, CancelToken())
        assert (held.outcome, held.active) == (Outcome.UNCHANGED, 2)
        server.traffic(2, 1000, 0.01, 0.010)
        clock.now += WINDOW
        after = syncer.sync(model, CancelToken())
    assert after.bake is not None and after.bake.verdict in ("passed", "baking")
    assert after.active == 3


@pytest.mark.parametrize(("inconclusive", "active"), [("pass", 2), ("fail", 1)])
def test_too_few_requests_is_inconclusive(
    tmp_path: Path, bucket: Path, inconclusive: str, active: int
) -> None:
    """Fewer than min_requests: the verdict is what ``inconclusive`` says."""
    clock = Clock()
    with serving() as (server, url):
        syncer, _ = _start(tmp_path, bucket, server, clock)
        model = _model(bucket, url, inconclusive=inconclusive)
        _bake_v2(syncer, model, bucket, server, clock)
        server.traffic(2, 5, 1.0, 1.0)
        clock.now += WINDOW
        result = syncer.sync(model, CancelToken())
    assert result.active == active
    assert result.bake is not None and "5 requests < min_requests 20" in result.bake.reason


def test_metrics_down_at_the_end_waits_then_judges(tmp_path: Path, bucket: Path) -> None:
    """No metrics at the window's end: the bake waits one more window for them, then
    judges with no figures (inconclusive: pass by default)."""
    clock = Clock()
    with serving() as (server, url):
        syncer, _ = _start(tmp_path, bucket, server, clock)
        model = _model(bucket, url)
        _bake_v2(syncer, model, bucket, server, clock)
        server.metrics_up = False
        clock.now += WINDOW + 1
        waiting = syncer.sync(model, CancelToken())
        assert waiting.bake is not None and waiting.bake.verdict == "baking"
        assert waiting.wake_in is not None and waiting.wake_in <= 10
        clock.now += WINDOW
        judged = syncer.sync(model, CancelToken())
    assert judged.bake is not None and judged.bake.verdict == "inconclusive"
    assert "metrics unavailable" in judged.bake.reason and judged.active == 2


def test_bake_survives_a_new_process(tmp_path: Path, bucket: Path) -> None:
    """A bake begun by one `modelsync sync` process is judged by the next one (the
    journal is on disk): a bad v2 is rolled back by a second process."""
    store = tmp_path / "store"
    with serving() as (server, url):
        config = _config(tmp_path, store, bucket, url, "1s")
        put_revision(bucket, 1, model_files(1))
        assert run_cli("sync", "--config", str(config)).returncode == 0
        server.traffic(1, 100, 0.0, 0.01)
        put_revision(bucket, 2, model_files(2))
        first = run_cli("sync", "--config", str(config))
        assert first.returncode == 0, first.stderr
        server.traffic(2, 100, 0.5, 0.01)
        threading.Event().wait(1.2)
        second = run_cli("sync", "--config", str(config))
    assert os.readlink(store / "ranker" / "current") == "1"
    assert "error ratio 0.5000" in second.stdout + second.stderr
    state = Store(store, default_state_dir(store)).model("ranker").load_state()
    assert "error ratio 0.5000" in state.refused[2]


def _config(tmp_path: Path, store: Path, bucket: Path, url: str, window: str) -> Path:
    config = tmp_path / "modelsync.toml"
    config.write_text(
        f'store = "{store}"\ninterval = "1h"\n'
        f'[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
        f'[models.confirm]\nmethod = "http"\nurl = "{url}/v/{{version}}"\n'
        'json_field = "version"\nperiod = "50ms"\n'
        f'[models.bake]\nwindow = "{window}"\nmin_requests = 10\nmetrics_url = "{url}/metrics"\n'
        "[models.bake.series]\n"
        + "".join(f'{k} = "{v}"\n' for k, v in SERIES.model_dump(exclude_none=True).items())
    )
    return config


def test_sigterm_mid_bake_then_restart_rolls_back(tmp_path: Path, bucket: Path) -> None:
    """The daemon stopped by SIGTERM while v2 bakes exits 0 with v2 in place; restarted,
    it judges the same window and rolls the regression back at the window's end (the
    daemon's interval is an hour: the bake's end wakes it)."""
    store = tmp_path / "store"
    with serving() as (server, url):
        config = _config(tmp_path, store, bucket, url, "3s")
        put_revision(bucket, 1, model_files(1))
        assert run_cli("sync", "--config", str(config)).returncode == 0
        server.traffic(1, 100, 0.0, 0.01)
        put_revision(bucket, 2, model_files(2))
        daemon = DaemonProcess(["--config", str(config)], tmp_path / "d1.log")
        daemon.wait_for(lambda e: e.get("event") == "baking", 30)
        assert daemon.stop() == 0
        assert os.readlink(store / "ranker" / "current") == "2"
        server.traffic(2, 100, 0.5, 0.01)
        again = DaemonProcess(["--config", str(config)], tmp_path / "d2.log")
        try:
            event = again.wait_for(lambda e: e.get("event") == "revision refused", 30)
            # The refusal is logged before the rollback's activation: wait for the link.
            _wait_link(store / "ranker" / "current", "1", 30)
        finally:
            assert again.stop() == 0
    assert event["version"] == 2 and "error ratio 0.5000" in event["reason"]
    assert os.readlink(store / "ranker" / "current") == "1"


def test_status_page_and_metrics_show_the_bake(tmp_path: Path, bucket: Path) -> None:
    """While baking, `status --json` gives the remaining time and the previous revision's
    figures; after a failed bake each revision carries its verdict and figures, the page
    shows them beside the offline metrics, and the metrics count the verdict."""
    from prometheus_client import CollectorRegistry

    from modelsync.metrics import Metrics
    from modelsync.status import model_status
    from modelsync.statuspage import render

    clock = Clock()
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    with serving() as (server, url):
        syncer, store = _start(tmp_path, bucket, server, clock)
        model = _model(bucket, url)
        _bake_v2(syncer, model, bucket, server, clock)
        clock.now += 100
        baking = syncer.sync(model, CancelToken())
        metrics.record(baking, None, 0, False)
        status = model_status(syncer.store, model, clock.now)
        assert status["bake"]["version"] == 2 and status["bake"]["verdict"] == "baking"
        assert status["bake"]["remaining_s"] == WINDOW - 100
        assert status["bake"]["previous_figures"]["requests"] == 1000
        assert registry.get_sample_value(
            "modelsync_bake_remaining_seconds", {"model": "ranker"}
        ) == pytest.approx(WINDOW - 100)
        server.traffic(2, 1000, 0.2, 0.010)
        clock.now += WINDOW
        failed = syncer.sync(model, CancelToken())
        metrics.record(failed, None, 0, False)
        status = model_status(syncer.store, model, clock.now)
    assert status["bake"] is None
    by_version = {r["version"]: r for r in status["revisions"]}
    bake = by_version[2]["bake"]
    assert bake["verdict"] == "failed" and bake["current"]["error_ratio"] == pytest.approx(0.2)
    assert bake["previous"]["error_ratio"] == pytest.approx(0.01)
    page = render({"store": str(store), "models": [status]}, "now").decode()
    assert "bake verdict" in page and "20.00 %" in page and "prev 1.00 %" in page
    labels = {"model": "ranker", "verdict": "failed"}
    assert registry.get_sample_value("modelsync_bake_verdicts_total", labels) == 1
    assert registry.get_sample_value(
        "modelsync_bake_error_ratio", {"model": "ranker", "revision": "new"}
    ) == pytest.approx(0.2)


def _status_of(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    code, body = daemon.http("GET", "/status")
    assert code == 200, body
    return next(m for m in json.loads(body)["models"] if m["name"] == name)


def _wait_link(link: Path, want: str, timeout: float) -> float:
    """Seconds until ``link`` points at ``want``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if link.is_symlink() and os.readlink(link) == want:
            return time.monotonic() - began
        time.sleep(0.05)
    raise AssertionError(f"{link} not -> {want} within {timeout}s")


def test_a_baking_model_does_not_hold_up_another(tmp_path: Path, bucket: Path) -> None:
    """While ranker bakes a 60 s window in a running daemon, a revision published for a
    second model is activated within seconds, bytes and link, with ranker still baking
    (its figures so far in /status)."""
    store, other = tmp_path / "store", tmp_path / "bucket" / "other"
    with serving() as (server, url):
        config = _config(tmp_path, store, bucket, url, "60s")
        config.write_text(
            config.read_text().replace('interval = "1h"', 'interval = "1s"')
            + f'[[models]]\nname = "other"\nsource = "file://{other}"\n'
            f'[models.confirm]\nmethod = "http"\nurl = "{url}/v/{{version}}"\n'
            'json_field = "version"\nperiod = "50ms"\n'
        )
        put_revision(bucket, 1, model_files(1))
        put_revision(other, 1, model_files(11), model="other")
        assert run_cli("sync", "--config", str(config)).returncode == 0
        server.traffic(1, 100, 0.0, 0.01)
        put_revision(bucket, 2, model_files(2))
        daemon = DaemonProcess(["--config", str(config)], tmp_path / "d.log")
        try:
            daemon.wait_for(lambda e: e.get("event") == "baking" and e.get("version") == 2, 30)
            daemon.wait_http()
            put_revision(other, 2, model_files(12), model="other")
            took = _wait_link(store / "other" / "current", "2", 10)
            server.traffic(2, 50, 0.0, 0.01)
            deadline = time.monotonic() + 10
            while ((ranker := _status_of(daemon, "ranker"))["bake"]["figures"] or {}).get(
                "requests", 0
            ) < 50:
                assert time.monotonic() < deadline, ranker["bake"]
                time.sleep(0.1)
        finally:
            assert daemon.stop() == 0
    assert took < 10
    for rel, data in model_files(12).items():
        assert (store / "other" / "2" / rel).read_bytes() == data
    assert os.readlink(store / "ranker" / "current") == "2"
    assert ranker["bake"]["version"] == 2 and ranker["bake"]["verdict"] == "baking"
    assert 0 < ranker["bake"]["remaining_s"] < 60


def test_a_hung_metrics_endpoint_ends_the_pass_at_its_deadline(
    tmp_path: Path, bucket: Path
) -> None:
    """A metrics endpoint that accepts and never answers mid-bake: each pass is cut at
    pass_timeout (the scrape's own limit is longer), the daemon stays up serving v2, and
    once the metrics answer again the bake is judged on a later pass (here: rolled back)."""
    store = tmp_path / "store"
    with serving() as (server, url):
        hang, release = server.metrics_hang, server.metrics_release
        config = _config(tmp_path, store, bucket, url, "3s")
        config.write_text(
            config.read_text()
            .replace('interval = "1h"', 'interval = "1s"\npass_timeout = "2s"')
            .replace("min_requests = 10", 'min_requests = 10\nscrape_timeout = "30s"')
        )
        put_revision(bucket, 1, model_files(1))
        assert run_cli("sync", "--config", str(config)).returncode == 0
        server.traffic(1, 100, 0.0, 0.01)
        put_revision(bucket, 2, model_files(2))
        daemon = DaemonProcess(["--config", str(config)], tmp_path / "d.log")
        try:
            daemon.wait_for(lambda e: e.get("event") == "baking", 30)
            hang.set()
            mark = len(daemon.events())
            began = time.monotonic()
            cut = daemon.wait_for(lambda e: "pass_timeout" in json.dumps(e), 15, after=mark)
            cut_after = time.monotonic() - began
            assert daemon.proc.poll() is None
            assert os.readlink(store / "ranker" / "current") == "2"
            server.traffic(2, 100, 0.5, 0.01)
            hang.clear()
            release.set()
            refused = daemon.wait_for(lambda e: e.get("event") == "revision refused", 30)
            # The refusal is logged before the rollback's activation, which a 2 s pass
            # deadline may cut on a slow machine; the journal finishes it a pass later.
            _wait_link(store / "ranker" / "current", "1", 30)
            assert daemon.proc.poll() is None
        finally:
            release.set()
            assert daemon.stop() == 0
    assert cut_after < 6, cut
    assert refused["version"] == 2 and "error ratio 0.5000" in refused["reason"]
    assert os.readlink(store / "ranker" / "current") == "1"
    for rel, data in model_files(1).items():
        assert (store / "ranker" / "1" / rel).read_bytes() == data
