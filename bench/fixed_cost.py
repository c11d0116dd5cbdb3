"""The fixed cost of a fetching `modelsync sync` (whole minus download phase), trees alternated.

    python -m bench.fixed_cost --only small --runs 10 before=/path/to/old after=/path/to/new
    python -m bench.fixed_cost --store s3 --only mid --runs 10 before=... after=...

One store server (``--store``: gs is fake-gcs-server, s3 moto, az Azurite;
bench/download/servers.py) holds the download bench's datasets (``--only`` picks them
by key, e.g. small = 1,000 x 100 KB, mid = 200 x 1 MB), published once. Each TREE is a
checkout run with PYTHONPATH=TREE and cwd TREE (bytecode written as usual); each run
is `python -m modelsync --log-format json sync` of the bench's own config into an
empty store, after `sync(1)` so that one run's writeback does not land in the next.
The trees run in turn, the order flipped every round. The download phase is the
command's own figure (the ``seconds`` of its "downloaded and verified" line, as the
download bench reads it); each row prints the median and range of the fixed cost, the
median whole run and phase, and the median CPU (user + system of the child, wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.download import tools
from bench.download.datasets import Dataset, datasets
from bench.download.servers import Server, start_az, start_gcs, start_s3
from bench.download.suite import publish


@dataclass(frozen=True)
class Sample:
    whole: float
    phase: float
    cpu: float

    @property
    def fixed(self) -> float:
        return self.whole - self.phase


def _phase(log: str) -> float:
    for line in log.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "downloaded and verified":
                return float(event["seconds"])
    raise SystemExit(f"no 'downloaded and verified' line in:\n{log[-2000:]}")


def _run(argv: list[str], env: dict[str, str], tree: str, store: Path) -> Sample:
    """One sync of ``tree`` into an emptied ``store``; raises if it fails."""
    shutil.rmtree(store, ignore_errors=True)
    os.sync()
    child_env = {**env, "PYTHONPATH": tree}
    child_env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv, env=child_env, cwd=tree, stdout=subprocess.DEVNULL, stderr=err
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        whole = time.perf_counter() - start
        err.seek(0)
        log = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: exit {proc.returncode}: {log[-2000:]}")
    return Sample(whole, _phase(log), usage.ru_utime + usage.ru_stime)


def _measure(
    server: Server, data: Dataset, trees: list[tuple[str, str]], runs: int, work: Path
) -> dict[str, list[Sample]]:
    store = work / "out" / "models"
    command = tools.modelsync(server, data, store, work / f"{data.key}.toml")
    samples: dict[str, list[Sample]] = {label: [] for label, _ in trees}
    for _label, tree in trees:
        _run(command.argv, command.env, tree, store)  # bytecode written, server warm
    for round_ in range(runs):
        for label, tree in trees if round_ % 2 == 0 else trees[::-1]:
            samples[label].append(_run(command.argv, command.env, tree, store))
    return samples


def main() -> None:
    """Publish the datasets, time every TREE's fetching sync, print one row per tree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--only", default="small", help="datasets whose key has this")
    parser.add_argument("--store", default="gs", choices=("gs", "s3", "az"))
    parser.add_argument("trees", nargs="+", metavar="LABEL=TREE")
    args = parser.parse_args()
    trees = [(t.split("=", 1)[0], t.split("=", 1)[1]) for t in args.trees]
    wanted = [d for d in datasets(False, 1.0) if args.only in d.key and args.store in d.backends]
    wanted = [d for d in wanted if not d.changed]
    with tempfile.TemporaryDirectory(prefix="modelsync-fixed-") as tmp:
        work = Path(tmp)
        starts: dict[str, Callable[[], Server]] = {
            "gs": lambda: start_gcs(work / "gcs"),
            "s3": start_s3,
            "az": lambda: start_az(work / "az"),
        }
        server = starts[args.store]()
        try:
            for data in wanted:
                publish(server, data, work)
                samples = _measure(server, data, trees, args.runs, work)
                for label, rows in samples.items():
                    fixed = [s.fixed for s in rows]
                    print(
                        f"{data.label} {label}: n={len(rows)} fixed median "
                        f"{statistics.median(fixed):.3f} s ({min(fixed):.3f}-{max(fixed):.3f}); "
                        f"whole {statistics.median(s.whole for s in rows):.3f} s, "
                        f"phase {statistics.median(s.phase for s in rows):.3f} s, "
                        f"CPU {statistics.median(s.cpu for s in rows):.2f} s",
                        flush=True,
                    )
        finally:
            server.close()


if __name__ == "__main__":
    main()
