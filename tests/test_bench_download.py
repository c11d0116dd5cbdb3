"""`python -m bench.download --quick`: the whole benchmark end to end, at small sizes.

One round on fake-gcs-server, moto and Azurite; the Python peers (gcsfs, KServe's
initializer) live in a virtualenv of their own that `make bench` builds, so this run
goes without them, by design. The figures are not checked against targets (a loaded
CI machine says nothing about them); the table is checked for every row and for
numbers that can be true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.skipif(
    shutil.which("rclone") is None or shutil.which("curl") is None,
    reason="rclone and curl come from Debian (.ci/run installs them as root)",
)

STORES = {"gs": "GCS (fake-gcs-server)", "s3": "S3 (moto)", "az": "Azure (Azurite)"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """The quick benchmark's printed tables and its JSON results."""
    work = tmp_path_factory.mktemp("bench")
    out = work / "results.json"
    env = {**os.environ, "BENCH_DIR": str(work)}
    argv = [sys.executable, "-m", "bench.download", "--quick", "--rounds", "1"]
    # No peers' virtualenv: the run must say so and go on without their rows.
    argv += ["--json", str(out), "--peers-python", str(work / "no-peers" / "python")]
    done = subprocess.run(
        argv,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "(make bench-peers): no gcsfs and KServe rows" in done.stderr
    return done.stdout, json.loads(out.read_text())


def _row(rows: list[dict[str, Any]], key: str, store: str, tool: str) -> dict[str, Any]:
    found = [
        r for r in rows if r["key"] == key and r["store"] == STORES[store] and r["tool"] == tool
    ]
    assert len(found) == 1, (key, store, tool)
    return found[0]


def test_every_dataset_has_modelsync_its_peers_and_both_limits(
    bench: tuple[str, dict[str, Any]],
) -> None:
    """Each dataset and store has modelsync, its peers, curl and the durable write."""
    _, doc = bench
    rows = doc["rows"]
    expected = {
        ("small", "gs"): ["rclone"],
        ("mid", "gs"): ["rclone"],
        ("mid", "s3"): ["rclone", "s5cmd"],
        ("mid", "az"): ["rclone"],
        ("llm", "gs"): ["rclone"],
        ("llm-update", "gs"): ["rclone"],
        ("large", "s3"): ["rclone", "s5cmd"],
        ("large", "az"): ["rclone"],
    }
    for (key, store), peers in expected.items():
        for tool in ["modelsync", *peers, "limit: curl --parallel", "limit: write + fsync"]:
            row = _row(rows, key, store, tool)
            assert row["runs"] == "1/1", row
            assert 0 < row["seconds"] < 300, row
            if tool != "limit: write + fsync":
                assert row["cpu"] is not None and row["cpu"] >= 0, row
                assert row["server_cpu"] is not None and row["server_cpu"] >= 0, row
        whole = _row(rows, key, store, "modelsync")
        phase = _row(rows, key, store, "modelsync, download phase")
        fixed = _row(rows, key, store, "modelsync, fixed cost (whole - download)")
        assert 0 < phase["seconds"] < whole["seconds"]
        assert fixed["seconds"] == pytest.approx(whole["seconds"] - phase["seconds"], abs=1e-6)
        # A Python process holds at least its interpreter; a sample of nothing is 0.
        assert 10 < whole["rss_mb"] < 2000, whole
        assert whole["x_peer"] is not None and whole["x_peer"] > 0
        assert whole["x_limit"] is not None and whole["x_limit"] > 0
        if key != "llm-update":
            # The same command again fetched nothing (a fetch would fail its row). Not
            # compared with the fetching run: at --quick sizes the two are the same
            # start-up, and either may be the faster.
            again = _row(rows, key, store, "modelsync, no-op sync right after")
            assert again["runs"] == "1/1", again
            assert 0 < again["seconds"] < 300, again
            assert again["x_peer"] is None and again["mb_moved"] == 0, again


def test_update_fetches_only_the_changed_shard(bench: tuple[str, dict[str, Any]]) -> None:
    """The one-shard update row fetched exactly the changed shard's bytes."""
    _, doc = bench
    update = _row(doc["rows"], "llm-update", "gs", "modelsync")
    assert update["fetched_mb"] == pytest.approx(update["mb_moved"])
    fresh = _row(doc["rows"], "llm", "gs", "modelsync")
    assert fresh["fetched_mb"] > 2.9 * update["fetched_mb"]


def test_kill_latency_and_startup_rows(bench: tuple[str, dict[str, Any]]) -> None:
    """The kill -9 row says where it was killed; the sweep chooses a measured level;
    --version and the no-op sync have timings."""
    text, doc = bench
    killed = _row(doc["rows"], "llm", "gs", "modelsync, after kill -9")
    assert "killed with" in killed["note"]
    assert killed["fetched_mb"] is not None and killed["fetched_mb"] > 0
    levels = {r["tool"] for r in doc["latency"]}
    assert {"modelsync x4", "modelsync x16", "rclone x4", "curl x16"} <= levels
    assert doc["concurrency"] in (4, 16)
    startup = {r["tool"]: r for r in doc["startup"]}
    assert 0 < startup["--version"]["seconds"] < startup["no-op sync"]["seconds"]
    names = [t["name"] for t in doc["targets"]]
    assert any("no-op `sync`" in n for n in names)
    assert any("kill -9" in n for n in names)
    for heading in ("## Downloads", "## Latency-shaped run", "## Start-up", "## Targets"):
        assert heading in text
    assert "Chosen small-object concurrency:" in text


def test_a_disk_slower_than_the_network_is_said_beside_the_small_target() -> None:
    """Where writing 1,000 small files durably takes longer than curl downloads them,
    the small-file phase target says so, with both figures; elsewhere it does not."""
    from bench.download.report import CURL, DURABLE, PHASE, Row
    from bench.download.targets import GCS, evaluate

    def table(durable: float) -> list[Row]:
        rows = [(PHASE, 1.04), (CURL, 0.17), (DURABLE, durable)]
        return [Row("1,000 x 100 KB", "small", GCS, tool, secs, 100.0) for tool, secs in rows]

    slow_disk = next(t for t in evaluate(table(0.75), [], []) if "download phase" in t.name)
    assert slow_disk.met is False
    assert slow_disk.measured.startswith("0.16 (1.04 s vs 0.17 s)")
    assert "writing the same files durably alone takes 0.75 s here (0.72 x of it)" in (
        slow_disk.measured
    )
    fast_disk = next(t for t in evaluate(table(0.10), [], []) if "download phase" in t.name)
    assert fast_disk.measured == "0.16 (1.04 s vs 0.17 s)"


def test_a_whole_sync_target_below_the_machines_floor_says_so() -> None:
    """A whole-sync target that even a no-op sync's start-up plus the durable write of
    the same files could not meet names both figures and their sum; one the floor
    allows does not."""
    from bench.download.datasets import Dataset
    from bench.download.report import DURABLE, Row
    from bench.download.runs import Run
    from bench.download.suite import Sample
    from bench.download.targets import GCS, evaluate

    def verdict(durable: float) -> str:
        rows = [("modelsync", 0.75), ("rclone", 0.41), (DURABLE, durable)]
        table = [Row("200 x 1 MB", "mid", GCS, tool, secs, 200.0) for tool, secs in rows]
        data = Dataset("noop", "no-op", {"f": 1}, ("file",))
        noop = [
            Sample(data, "file", "no-op sync", Run(secs, secs, None, None, 0, ""))
            for secs in (0.20, 0.24, 0.30)
        ]
        target = next(
            t for t in evaluate(table, [], noop) if t.name.startswith("200 x 1 MB: whole")
        )
        assert target.met is False
        return target.measured

    slow = verdict(0.23)
    assert slow.startswith("0.55 (0.75 s vs rclone 0.41 s)")
    assert "start-up (0.24 s) plus the durable write of the same files (0.23 s) is 0.47 s" in slow
    assert "the target needs 0.34 s" in slow
    assert verdict(0.05) == "0.55 (0.75 s vs rclone 0.41 s)"


def test_the_no_op_target_holds_only_on_every_store_and_dataset() -> None:
    """The no-op target states the slowest no-op run right after a fetch beside the
    start-up rows' file:// one, and is missed when that one is over the bound even
    though the file:// one is under it."""
    from bench.download.datasets import Dataset
    from bench.download.report import Row
    from bench.download.runs import Run
    from bench.download.suite import NOOP_AGAIN, Sample
    from bench.download.targets import GCS, evaluate

    data = Dataset("noop", "no-op", {"f": 1}, ("file",))
    startup = [Sample(data, "file", "no-op sync", Run(0.21, 0.2, None, None, 0, ""))]

    def verdict(after: float) -> tuple[str, bool | None]:
        table = [
            Row("1,000 x 100 KB", "small", GCS, NOOP_AGAIN, after, 0.0),
            Row("200 x 1 MB", "mid", "S3 (moto)", NOOP_AGAIN, 0.22, 0.0),
        ]
        target = next(t for t in evaluate(table, [], startup) if t.name.startswith("no-op"))
        return target.measured, target.met

    slow, met = verdict(0.31)
    assert met is False
    assert slow.startswith("file:// 0.210 s wall")
    assert "right after a fetch, largest 0.310 s (1,000 x 100 KB on GCS (fake-gcs-server))" in slow
    assert "smallest 0.220 s" in slow
    assert verdict(0.24)[1] is True
