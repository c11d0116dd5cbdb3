"""A no-op `modelsync sync` of one gs:// model: wall and CPU seconds of the command.

    python -m bench.gs_noop_sync [--runs 7] [--tree DIR ...]

One small revision on gcp-storage-emulator; a first `sync` activates it, then each
timed `sync` finds nothing to do (list, manifest, compare). Each ``--tree`` (default:
this one) is a modelsync source tree put first on the child's PYTHONPATH, so two
trees are timed in the same rounds, alternating. Bytecode is written as usual
(PYTHONDONTWRITEBYTECODE is removed) and one untimed run warms the caches. Printed:
the median and the range of wall and CPU (user + system of the child) per tree.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modelsync.manifest import MANIFEST_NAME
from tests.emulators import stop
from tests.gcs_emulator import start as start_gcs
from tests.helpers import manifest_doc, model_files


def _publish(endpoint: str, bucket: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="bench",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )
    handle = client.bucket(bucket)
    client.create_bucket(bucket)
    files = model_files(1, size=2048)
    for key, data in files.items():
        handle.blob(f"models/ranker/1/{key}").upload_from_string(data)
    doc = manifest_doc(files, "ranker", 1)
    handle.blob(f"models/ranker/1/{MANIFEST_NAME}").upload_from_string(json.dumps(doc))
    client.close()


def _sync(tree: Path, store: Path, endpoint: str) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(tree), STORAGE_EMULATOR_HOST=endpoint)
    argv = [sys.executable, "-P", "-m", "modelsync", "sync", "--store", str(store)]
    argv += ["--model", "ranker", "--source", "gs://bench/models/ranker"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: sync exited {done.returncode}: {done.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tree", type=Path, nargs="+", default=[Path.cwd()])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelsync-bench-noop-"))
    proc, endpoint = start_gcs()
    try:
        _publish(endpoint, "bench")
        stores = {tree: work / f"store-{i}" for i, tree in enumerate(args.tree)}
        for tree, store in stores.items():
            _sync(tree, store, endpoint)  # the fetching sync, untimed
            _sync(tree, store, endpoint)  # warm caches, untimed
        times: dict[Path, list[tuple[float, float]]] = {tree: [] for tree in args.tree}
        for _ in range(args.runs):
            for tree, store in stores.items():
                times[tree].append(_sync(tree, store, endpoint))
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    print("| tree | runs | wall s median (min-max) | CPU s median (min-max) |")
    print("|---|---|---|---|")
    for tree, rows in times.items():
        walls, cpus = [w for w, _ in rows], [c for _, c in rows]
        print(
            f"| {tree} | {len(rows)} | {statistics.median(walls):.3f} "
            f"({min(walls):.3f}-{max(walls):.3f}) | {statistics.median(cpus):.3f} "
            f"({min(cpus):.3f}-{max(cpus):.3f}) |"
        )


if __name__ == "__main__":
    main()
