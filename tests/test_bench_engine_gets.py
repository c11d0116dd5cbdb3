"""bench/engine_gets.py: the transfer engine alone against fake-gcs-server, each
object's bytes arriving (one piece per object this small) and timed per round."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_object_arrives_and_each_round_is_a_row() -> None:
    """Five 1,000-byte objects, two rounds: a table row per round, five pieces each."""
    argv = ["--objects", "5", "--size", "1000", "--threads", "2", "--rounds", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.engine_gets", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = re.findall(r"^\| (\d) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|$", done.stdout, re.M)
    assert [(n, pieces) for n, _, _, pieces in rows] == [("1", "5"), ("2", "5")], done.stdout
    assert all(float(seconds) > 0 for _, seconds, _, _ in rows)
