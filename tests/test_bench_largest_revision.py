"""bench/largest_revision.py: the shipped memory limits it reads, and a small run."""

from __future__ import annotations

import subprocess
import sys

from bench.largest_revision import limits


def test_it_reads_every_shipped_limit_of_modelsync() -> None:
    """Both Kubernetes containers of modelsync and both systemd units, in bytes; the
    server's container is not modelsync's and is not read."""
    found = limits()
    assert set(found) == {
        "kubernetes modelsync-init",
        "kubernetes modelsync",
        "systemd modelsync-sync.service",
        "systemd modelsync.service",
    }
    assert all(value >= 256 * 2**20 for value in found.values()), found


def test_a_small_run_prints_both_commands_and_holds() -> None:
    """2,000 files with padded paths: `sync` and `run` each serve the revision (exit 0)
    and their peak RSS is printed beside every limit."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.largest_revision", "--files", "2000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| modelsync")]
    assert len(rows) == 2 and all(row.split("|")[2].strip() == "0" for row in rows), rows
    assert out.stdout.count("| yes |") == 4
