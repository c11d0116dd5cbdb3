"""Peak memory of the largest revision the manifest format admits, against the memory
limits the shipped deployments set.

    python -m bench.largest_revision [--files 100000] [--no-fill]

A file:// bucket gets one revision of ``--files`` files (manifest.MAX_FILES by
default), each a few distinct bytes, their paths padded so that the manifest is just
under MAX_MANIFEST_BYTES: what a bucket writer can make modelsync hold without any
check refusing it. Then, each in a child process with a generous pass_timeout:
``modelsync sync`` (the init container, a systemd one-shot) and ``modelsync run`` (the
sidecar, stopped with SIGTERM once the revision is active). Printed: each command's
peak RSS (ru_maxrss from wait4) and wall time, and every memory limit that
deploy/kubernetes/deployment.yaml and systemd/*.service give modelsync. Exit 1 when a
peak exceeds a limit: that deployment would be OOM-killed by such a revision on
every attempt (docs/performance.md, "The largest revision").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from modelsync.config import default_state_dir
from modelsync.manifest import (
    MANIFEST_NAME,
    MAX_FILES,
    MAX_MANIFEST_BYTES,
    MAX_NAME_BYTES,
    FileEntry,
    Manifest,
)

REPO = Path(__file__).resolve().parent.parent
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 2**10, "M": 2**20, "G": 2**30}


def limits() -> dict[str, int]:
    """Memory limits (bytes) that the shipped deployments set for modelsync's processes."""
    found: dict[str, int] = {}
    deployment = (REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text()
    # The containers named modelsync*: their `limits: { memory: N }` line.
    for name, block in re.findall(
        r"- name: (modelsync[\w-]*)\n(.*?)(?=\n\s+- name: |\Z)", deployment, re.S
    ):
        match = re.search(r"limits: \{ memory: (\d+)(Ki|Mi|Gi) \}", block)
        if match:
            found[f"kubernetes {name}"] = int(match[1]) * _UNITS[match[2]]
    for unit in sorted((REPO / "systemd").glob("*.service")):
        match = re.search(r"^MemoryMax=(\d+)([KMG])$", unit.read_text(), re.M)
        if match:
            found[f"systemd {unit.name}"] = int(match[1]) * _UNITS[match[2]]
    return found


def _manifest(files: int, pad: int) -> tuple[bytes, dict[str, bytes]]:
    """The published manifest of ``files`` files of a few distinct bytes, each path
    padded by ``pad`` characters, and the files themselves."""
    content = {f"d{i % 100:02d}/{'p' * pad}{i:06d}": b"%d" % i for i in range(files)}
    entries = tuple(
        FileEntry(path, len(data), hashlib.sha256(data).hexdigest())
        for path, data in content.items()
    )
    created = datetime(2026, 1, 1, tzinfo=UTC)
    return Manifest("big", 1, created, entries).to_bytes(), content


def publish(bucket: Path, files: int, fill: bool) -> int:
    """Revision 1 of model ``big`` under ``bucket``; returns the manifest's size."""
    raw, content = _manifest(files, 0)
    if fill:  # every name longer by the same count: the manifest just under its bound,
        # or each name at NAME_MAX (fewer files than MAX_FILES cannot fill it)
        pad = min((MAX_MANIFEST_BYTES - len(raw)) // files, MAX_NAME_BYTES - 6)
        raw, content = _manifest(files, pad)
    revision = bucket / "big" / "1"
    for path, data in content.items():
        target = revision / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (revision / MANIFEST_NAME).write_bytes(raw)
    return len(raw)


def _config(work: Path, bucket: Path) -> Path:
    config = work / "modelsync.toml"
    config.write_text(
        f'store = "{work / "store"}"\npass_timeout = "900s"\ninterval = "1h"\n\n'
        f'[[models]]\nname = "big"\nsource = "file://{bucket / "big"}"\n'
    )
    return config


def measure(argv: list[str], *, until: str | None = None) -> tuple[int, float, int]:
    """(exit status, wall seconds, peak RSS bytes) of one child; with ``until``, the
    child is sent SIGTERM once a log line contains it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    start = time.perf_counter()
    child = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert child.stderr is not None
    tail: deque[str] = deque(maxlen=6)
    for line in child.stderr:
        tail.append(line.rstrip())
        if until is not None and until in line:
            child.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        print("\n".join(tail), file=sys.stderr)
    return child.returncode, wall, usage.ru_maxrss * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.largest_revision", description=__doc__)
    parser.add_argument("--files", type=int, default=MAX_FILES)
    parser.add_argument("--no-fill", action="store_true", help="short paths (no padding)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="modelsync-largest-"))
    try:
        bucket = work / "bucket"
        size = publish(bucket, args.files, not args.no_fill)
        config = _config(work, bucket)
        base = [sys.executable, "-m", "modelsync", "--log-format", "json"]
        rows = []
        code, wall, peak = measure([*base, "sync", "--config", str(config)])
        rows.append(("modelsync sync (init container, one-shot)", code, wall, peak))
        shutil.rmtree(work / "store")
        shutil.rmtree(default_state_dir(work / "store"), ignore_errors=True)
        code, wall, peak = measure([*base, "run", "--config", str(config)], until='"committed"')
        rows.append(("modelsync run (sidecar), stopped once active", code, wall, peak))
        shown = limits()
        print(f"## One revision of {args.files:,} files, a {size:,}-byte manifest (file://)\n")
        print("| command | exit | seconds | peak RSS MB |\n|---|---:|---:|---:|")
        for what, code, wall, peak in rows:
            print(f"| {what} | {code} | {wall:.1f} | {peak / 2**20:.0f} |")
        worst = max(peak for *_, peak in rows)
        print("\n| shipped limit | MB | holds the peak |\n|---|---:|---|")
        for name, limit in shown.items():
            print(f"| {name} | {limit / 2**20:.0f} | {'yes' if worst <= limit else 'no'} |")
        over = [name for name, limit in shown.items() if limit < worst]
        failed = [what for what, code, *_ in rows if code != 0]
        if failed or over:
            print(f"\nfailed: {failed or 'none'}; limits below the peak: {over or 'none'}")
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
