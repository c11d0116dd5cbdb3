"""One measured child process: wall time, its CPU, the server's CPU, its peak RSS."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    """What one run of one tool cost."""

    seconds: float
    cpu: float  # user + system of the tool (and the children it waited for)
    server_cpu: float | None  # the storage server's CPU over the same interval
    rss_mb: float | None  # the tool's peak resident set (VmHWM)
    code: int
    stderr: str


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process: its own peak, reset at exec (unlike wait4's ru_maxrss,
    which keeps the forking parent's peak across exec)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(
    argv: list[str],
    env: dict[str, str],
    *,
    server_cpu: Callable[[], float] | None = None,
    stderr_to: Path,
    timeout: float = 3600,
) -> Run:
    """Run ``argv`` to completion; its stderr goes to ``stderr_to`` (a pipe nobody reads
    while it runs could fill and stall it).

    ``server_cpu`` gives the server's CPU seconds so far. VmHWM is a high-water mark,
    so the samples every 10 ms miss only what the child adds in its last 10 ms.
    """
    # Every run starts with nothing left to write back: the files the previous tool
    # wrote without fsync (rclone, gcsfs) would otherwise be flushed during this
    # run's own writes (docs/performance.md, the fourth run of 2026-12-06).
    os.sync()
    server_before = server_cpu() if server_cpu else None
    peak = 0.0
    started = time.perf_counter()
    with stderr_to.open("wb") as err:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
            if time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    server = server_cpu() - server_before if server_cpu and server_before is not None else None
    return Run(
        seconds=elapsed,
        cpu=usage.ru_utime + usage.ru_stime,
        server_cpu=server,
        rss_mb=peak or None,
        code=proc.returncode,
        stderr=stderr_to.read_text(errors="replace")[-2000:],
    )
