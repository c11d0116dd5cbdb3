"""What every benchmark here shares: rows, a child process measured for wall time and
peak RSS, and trees of seeded random files."""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MB = 1_000_000


@dataclass
class Row:
    dataset: str
    tool: str
    seconds: float | None
    mbytes: float
    rss_mb: float | None
    note: str = ""

    def line(self) -> str:
        rate = f"{self.mbytes / self.seconds:8.1f}" if self.seconds else "       -"
        secs = f"{self.seconds:7.2f}" if self.seconds else "      -"
        rss = f"{self.rss_mb:7.0f}" if self.rss_mb else "      -"
        return f"| {self.dataset:<14} | {self.tool:<22} | {secs} | {rate} | {rss} | {self.note}"


def print_table(rows: list[Row]) -> None:
    print("\n| dataset        | tool                   | seconds |     MB/s | RSS MB  | notes")
    print("|----------------|------------------------|---------|----------|---------|------")
    for row in rows:
        print(row.line())


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process: its own peak, reset at exec (unlike wait4's ru_maxrss,
    which carries the forking parent's peak across exec)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_measured(
    argv: list[str], env: dict[str, str], stderr_to: Path | None = None
) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB, sampled every 20 ms) and exit code of a child process.

    Its stderr goes to a file (``stderr_to``, else a temporary one: a pipe nobody
    reads while the child runs could fill and stall it); the tail is shown on failure.
    """
    with tempfile.TemporaryDirectory() as tmp:
        log = stderr_to or Path(tmp) / "stderr"
        started = time.monotonic()
        peak = 0.0
        with (
            log.open("wb") as err,
            subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err) as proc,
        ):
            while proc.poll() is None:
                peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
                time.sleep(0.02)
            elapsed = time.monotonic() - started
        if proc.returncode != 0:
            sys.stderr.write(log.read_text(errors="replace")[-2000:])
    return elapsed, peak, proc.returncode


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def random_tree(root: Path, files: dict[str, int], seed: str) -> Path:
    """Files of the given sizes under ``root``, random bytes seeded by ``seed``."""
    rng = random.Random(seed)
    for name, size in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            left = size
            while left:
                step = min(left, 8 * 1024 * 1024)
                handle.write(rng.randbytes(step))
                left -= step
    return root
