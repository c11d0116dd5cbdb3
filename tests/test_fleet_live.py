"""A fleet halted on live figures: four `modelsync run` processes follow one channel, each
baking on its own server's metrics (one scripted server plays the four, its counters
driven by what each host serves). A canary that every host's own bake lets through,
but whose cohort median error-ratio rise crosses the pointer's threshold, halts the
fleet and every host returns to stable; a canary as good as stable is promoted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemonproc import DaemonProcess
from tests.helpers import model_files, put_revision, run_cli
from tests.httpstub import http_stub

HOSTS = [f"host-{i}" for i in range(4)]
# Error ratio of each version's traffic: v2's rise (0.025) is under each host's bake
# ceiling (0.05) but over the channel's cohort threshold (0.01).
ERRORS = {1: 0.005, 2: 0.03, 3: 0.005}
SERIES = (
    'success = "model_infer_request_success_total"\n'
    'failure = "model_infer_request_failure_total"\n'
    'duration_sum = "model_infer_request_duration_sum"\n'
    'duration_count = "model_infer_request_duration_count"\n'
)


class Traffic(threading.Thread):
    """Sends each host's server traffic for the version the host serves (its
    ``current`` link), and answers its metrics and confirm requests."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root, self.stop = root, threading.Event()
        self.counts: dict[tuple[str, int], list[float]] = {}
        self.lock = threading.Lock()

    def serving(self, host: str) -> int | None:
        try:
            return int((self.root / host / "store" / "ranker" / "current").readlink().name)
        except (OSError, ValueError):
            return None

    def run(self) -> None:
        while not self.stop.wait(0.1):
            for host in HOSTS:
                version = self.serving(host)
                if version is None:
                    continue
                with self.lock:
                    row = self.counts.setdefault((host, version), [0.0, 0.0, 0.0])
                    row[0] += 20 * (1 - ERRORS[version])
                    row[1] += 20 * ERRORS[version]
                    row[2] += 20 * 0.01

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if path.startswith("/metrics/"):
            host, lines = path.rsplit("/", 1)[1], []
            with self.lock:
                for (h, v), (ok, bad, secs) in sorted(self.counts.items()):
                    if h != host:
                        continue
                    labels = f'model="ranker",version="{v}"'
                    lines += [
                        f"model_infer_request_success_total{{{labels}}} {ok}",
                        f"model_infer_request_failure_total{{{labels}}} {bad}",
                        f"model_infer_request_duration_sum{{{labels}}} {secs}",
                        f"model_infer_request_duration_count{{{labels}}} {ok + bad}",
                    ]
            return 200, ("\n".join(lines) + "\n").encode()
        return 200, json.dumps({"version": int(path.rsplit("/", 1)[1])}).encode()


@pytest.fixture
def fleet(tmp_path: Path, bucket: Path) -> Iterator[tuple[Traffic, Callable[..., str]]]:
    traffic = Traffic(tmp_path)
    procs: list[DaemonProcess] = []
    with http_stub(traffic.answer) as (url, _):
        for host in HOSTS:
            config = tmp_path / host / "modelsync.toml"
            config.parent.mkdir(parents=True)
            config.write_text(
                f'store = "{tmp_path / host / "store"}"\ninterval = "1s"\nidentity = "{host}"\n'
                f'[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
                'channel = "prod"\nreport = true\n'
                f'[models.confirm]\nmethod = "http"\nurl = "{url}/v/{{version}}"\n'
                'json_field = "version"\nperiod = "50ms"\n'
                f'[models.bake]\nwindow = "2s"\nmin_requests = 10\n'
                f'metrics_url = "{url}/metrics/{host}"\n'
                f"[models.bake.series]\n{SERIES}"
            )
            procs.append(DaemonProcess(["--config", str(config)], tmp_path / f"{host}.log"))
        traffic.start()

        def release(command: str, *args: str) -> str:
            done = run_cli(
                "release",
                command,
                "ranker",
                *args,
                "--source",
                f"file://{bucket}",
                "--channel",
                "prod",
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        try:
            yield traffic, release
        finally:
            traffic.stop.set()
            for proc in procs:
                assert proc.stop(20) == 0


def _wait(traffic: Traffic, want: Callable[[dict[str, int | None]], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if want({h: traffic.serving(h) for h in HOSTS}):
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: { ({h: traffic.serving(h) for h in HOSTS}) }")


def test_cohort_regression_halts_the_fleet_and_a_fine_canary_is_promoted(
    bucket: Path, fleet: tuple[Traffic, Callable[..., str]]
) -> None:
    """v2 passes each host's bake but the cohort median rise crosses 0.01: halted by
    cohort_median, every host back on v1; v3, as good as v1, baked and promoted."""
    traffic, release = fleet
    for version in (1, 2, 3):
        put_revision(bucket, version, model_files(version))
    release("promote", "--version", "1")
    _wait(traffic, lambda s: all(v == 1 for v in s.values()), 60)
    rules = ("--halt-on-error-increase", "0.01", "--halt-min-hosts", "2")
    release("start", "2", "--percent", "100", *rules)
    _wait(traffic, lambda s: any(v == 2 for v in s.values()), 60)
    _wait(traffic, lambda s: all(v == 1 for v in s.values()), 90)
    status = json.loads(release("status", "--json"))
    assert status["halted"] and status["halt"]["rule"] == "cohort_median", status["halt"]
    assert "median error-ratio rise" in status["halt"]["reason"]
    baked = [h for h, c in status["live"].items() if c["bake"]["verdict"] == "passed"]
    assert len(baked) >= 2  # each host's own bake let v2 through
    assert status["live_aggregate"]["median_error_increase"] == pytest.approx(0.025, abs=0.005)

    release("abort")
    release("start", "3", "--percent", "100", *rules)
    _wait(traffic, lambda s: all(v == 3 for v in s.values()), 60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = json.loads(release("status", "--json"))
        verdicts = [c["bake"]["verdict"] for c in status["live"].values() if c.get("bake")]
        if verdicts.count("passed") >= 2:
            break
        time.sleep(0.5)
    assert not status["halted"], status["halt"]
    release("promote")
    _wait(traffic, lambda s: all(v == 3 for v in s.values()), 30)
    pointer = json.loads((bucket / "_channels" / "prod.json").read_text())
    assert pointer["stable"] == 3 and pointer["canary"] is None
