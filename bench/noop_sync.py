"""CPU and wall of a no-op `modelsync sync` of a file:// model, source trees alternated.

    python -m bench.noop_sync --runs 20 before=/path/to/old/tree after=/path/to/new/tree

Each TREE is a checkout run with PYTHONPATH=TREE (cwd TREE, bytecode written as
usual). One bucket with one revision is made in a temporary directory; every tree
gets its own store, synced twice before timing (the first run activates, the second
writes bytecode). Then the trees run in turn, the order flipped every round, and each
row prints the median and range of the child's user + system CPU (getrusage of
children) and of its wall time. A row named ``python`` times ``python -c pass``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _bucket(root: Path) -> Path:
    """A file:// source with revision 1 of model 'ranker' (one file and its manifest)."""
    model = root / "bucket" / "ranker"
    revision = model / "1"
    revision.mkdir(parents=True)
    data = b"weights\n"
    digest = hashlib.sha256(data).hexdigest()
    (revision / "model.bin").write_bytes(data)
    manifest = {
        "format": 1,
        "model": "ranker",
        "version": 1,
        "created": "2026-01-01T00:00:00Z",
        "files": [{"path": "model.bin", "size": len(data), "sha256": digest}],
    }
    (revision / "modelsync-manifest.json").write_text(json.dumps(manifest))
    return model


def _run(argv: list[str], tree: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one child; raises if it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = tree
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=tree, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{argv} in {tree}: exit {done.returncode}: {done.stderr.decode()}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    """Time every TREE's no-op sync, alternated, and print one row per tree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("trees", nargs="+", metavar="LABEL=TREE")
    args = parser.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.trees]
    with tempfile.TemporaryDirectory() as tmp:
        source = f"file://{_bucket(Path(tmp))}"
        argvs: dict[str, list[str]] = {}
        for label, _tree in trees:
            store = Path(tmp) / f"store-{label}"
            flags = ["--model", "ranker", "--source", source]
            argvs[label] = (
                [sys.executable, "-c", "pass"]
                if label == "python"
                else [sys.executable, "-m", "modelsync", "sync", "--store", str(store), *flags]
            )
        for label, tree in trees:
            _run(argvs[label], tree)
            _run(argvs[label], tree)
        walls: dict[str, list[float]] = {label: [] for label, _ in trees}
        cpus: dict[str, list[float]] = {label: [] for label, _ in trees}
        for round_ in range(args.runs):
            for label, tree in trees if round_ % 2 == 0 else trees[::-1]:
                wall, cpu = _run(argvs[label], tree)
                walls[label].append(wall)
                cpus[label].append(cpu)
    for label, _tree in trees:
        c, w = cpus[label], walls[label]
        print(
            f"{label}: n={len(c)} CPU median {statistics.median(c):.3f} s "
            f"({min(c):.3f}-{max(c):.3f}); "
            f"wall median {statistics.median(w):.3f} s (min {min(w):.3f})"
        )


if __name__ == "__main__":
    main()
