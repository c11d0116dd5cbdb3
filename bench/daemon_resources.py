"""The daemon's memory and CPU: idle, during a 1 GB download, and over idle passes.

    python -m bench.daemon_resources          (or: make bench-daemon)

Runs `modelsync run` as a child process against a local bucket and samples its
VmRSS every 20 ms (VmHWM at the end), beside rclone copying the same revision
(a peer measured in the same run). CPU time comes from /proc/<pid>/stat.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import run_measured
from tests.daemonproc import DaemonProcess
from tests.helpers import sidecar_flags

MB = 1_000_000


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def publish(bucket: Path, version: int, total_mb: int, files: int) -> None:
    src = bucket.parent.parent / "src" / str(version)
    rng = random.Random(version)
    for index in range(files):
        path = src / "variables" / f"shard-{index:02d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            left = total_mb * MB // files
            while left:
                step = min(left, 16 * MB)
                handle.write(rng.randbytes(step))
                left -= step
    subprocess.run(
        [
            sys.executable,
            "-m",
            "modelsync",
            "publish",
            str(src),
            f"file://{bucket}",
            "--version",
            str(version),
        ],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(src)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--idle-seconds", type=int, default=60)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelsync-bench-daemon-"))
    bucket = work / "bucket" / "ranker"
    bucket.mkdir(parents=True)
    rows: list[tuple[str, str]] = []
    try:
        publish(bucket, 1, 1, 1)
        daemon = DaemonProcess(
            [
                *sidecar_flags(work / "store", bucket),
                "--interval",
                "1s",
            ],
            work / "log",
            env={"MODELSYNC_LOG_LEVEL": "warning"},
        )
        daemon.wait_http()
        time.sleep(5)
        rows.append(("daemon RSS idle (after first pass)", f"{rss_mb(daemon.pid):.1f} MB"))

        cpu0, wall0 = cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(args.idle_seconds)
        cpu_idle = cpu_seconds(daemon.pid) - cpu0
        passes = (time.monotonic() - wall0) / 1.0
        rows.append(
            (
                f"CPU over {args.idle_seconds} s idle, interval 1 s (~{passes:.0f} passes)",
                f"{cpu_idle:.2f} s",
            )
        )
        per_pass = cpu_idle / passes
        rows.append(("CPU per idle pass (file:// source)", f"{per_pass * 1000:.1f} ms"))

        print(f"publishing {args.size_mb} MB ...", file=sys.stderr, flush=True)
        publish(bucket, 2, args.size_mb, 8)
        peak = 0.0
        started = time.monotonic()
        while not (work / "store" / "ranker" / "2").exists():
            peak = max(peak, rss_mb(daemon.pid))
            time.sleep(0.02)
            if time.monotonic() - started > 300:
                raise SystemExit("download did not finish")
        elapsed = time.monotonic() - started
        rows.append(
            (
                f"daemon RSS peak during a {args.size_mb} MB download",
                f"{peak:.1f} MB (VmHWM {rss_mb(daemon.pid, 'VmHWM'):.1f} MB)",
            )
        )
        rows.append(("  download + verify + activate", f"{elapsed:.1f} s"))
        time.sleep(3)
        rows.append(("daemon RSS idle after the download", f"{rss_mb(daemon.pid):.1f} MB"))
        assert daemon.stop() == 0

        idle = DaemonProcess(
            [
                *sidecar_flags(work / "store", bucket),
                "--interval",
                "10m",
            ],
            work / "log2",
            env={"MODELSYNC_LOG_LEVEL": "warning"},
        )
        idle.wait_http()
        time.sleep(3)
        cpu0 = cpu_seconds(idle.pid)
        time.sleep(args.idle_seconds)
        base = cpu_seconds(idle.pid) - cpu0
        idle.stop()
        rows.append(
            (f"CPU over {args.idle_seconds} s idle, interval 10m (no pass)", f"{base:.2f} s")
        )
        ten_minutes = base * 600 / args.idle_seconds + per_pass
        rows.append(
            (
                "=> CPU per 10 idle minutes at the default interval (1 pass)",
                f"{ten_minutes:.2f} s (from the two rows above)",
            )
        )

        rclone = shutil.which("rclone")
        if rclone:
            secs, peak_rclone, code = run_measured(
                [rclone, "copy", str(bucket / "2"), str(work / "rclone-copy")], dict(os.environ)
            )
            rows.append(
                (
                    f"peer: rclone copy of the same {args.size_mb} MB (RSS peak)",
                    f"{peak_rclone:.1f} MB in {secs:.1f} s" if code == 0 else "failed",
                )
            )
        secs, peak_cp, code = run_measured(
            ["cp", "-r", str(bucket / "2"), str(work / "cp-copy")], dict(os.environ)
        )
        rows.append(
            (
                f"peer: cp -r of the same {args.size_mb} MB (RSS peak)",
                f"{peak_cp:.1f} MB in {secs:.1f} s",
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k, _ in rows)
    print(f"\n| {'measure':<{width}} | value")
    print(f"|{'-' * (width + 2)}|------")
    for key, value in rows:
        print(f"| {key:<{width}} | {value}")


if __name__ == "__main__":
    main()
