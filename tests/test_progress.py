from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge

from modelsync.progress import ByteTally, LoggedProgress
from tests.helpers import model_files, put_revision, sidecar_flags


def test_sync_on_a_terminal_draws_a_progress_bar(tmp_path: Path, bucket: Path) -> None:
    """Run sync with a real pseudo-terminal as stderr: a percentage bar is drawn."""
    put_revision(bucket, 1, model_files(1, size=2_000_000))
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelsync",
            "sync",
            *sidecar_flags(tmp_path / "store", bucket),
        ],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    output = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert proc.wait(timeout=30) == 0
    text = output.decode(errors="replace")
    assert "ranker v1" in text and "100%" in text
    assert "2/2 MB" in text and "MB/s" in text  # bytes done of the total, and the rate
    assert '{"' not in text  # console lines, not JSON, on a terminal


def test_tally_rate_eta_and_clamp() -> None:
    now = [100.0]
    tally = ByteTally(1000, clock=lambda: now[0])
    assert tally.eta() is None and "starting" in tally.summary()
    now[0] = 102.0
    tally.add(400)
    assert tally.rate() == 200 and tally.eta() == 3
    tally.add(900)  # a retried range counted twice never goes past the total
    assert tally.done == 1000 and tally.eta() == 0


def test_logged_progress_logs_every_interval_and_gauges_only_while_running(
    _quiet_logs: io.StringIO,
) -> None:
    """A line every interval (also while stalled), not per file; the gauge exists only
    while the download runs."""
    registry = CollectorRegistry()
    gauge = Gauge("modelsync_download_progress_bytes", "x", ["model"], registry=registry)
    progress = LoggedProgress(interval=0.1, gauge=gauge)
    with progress("ranker", 7, 10_000_000) as update:
        for _ in range(10):
            update(250_000)
        assert (
            registry.get_sample_value("modelsync_download_progress_bytes", {"model": "ranker"})
            == 2_500_000
        )
        time.sleep(0.35)  # stalled: the lines go on
    assert (
        registry.get_sample_value("modelsync_download_progress_bytes", {"model": "ranker"}) is None
    )
    lines = [json.loads(x) for x in _quiet_logs.getvalue().splitlines()]
    events = [x for x in lines if x.get("event") == "download progress"]
    assert 2 <= len(events) <= 4, events
    assert all(e["model"] == "ranker" and e["version"] == 7 for e in events)
    assert events[-1]["bytes"] == 2_500_000 and events[-1]["percent"] == 25.0
    assert events[-1]["total_bytes"] == 10_000_000 and events[-1]["eta_seconds"] > 0
