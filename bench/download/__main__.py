"""Runs the download benchmark and prints its tables (see bench/download/__init__.py)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.download import report, targets
from bench.download.datasets import Dataset, datasets
from bench.download.servers import Server, start_az, start_gcs, start_s3
from bench.download.suite import (
    Sample,
    latency_sweep,
    measure_dataset,
    publish,
    resume,
    startup,
)

LEVELS = [4, 8, 16, 32, 64]
QUICK_LEVELS = [4, 16]


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.download", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for the test")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies counts and sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=30.0, help="the latency run's delay")
    parser.add_argument(
        "--peers-python",
        type=Path,
        default=Path(".envs/benchpeers/bin/python"),
        help="python of the virtualenv with gcsfs and kserve-storage (make bench-peers)",
    )
    parser.add_argument("--only", default=None, help="only datasets whose key has this")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    peers = args.peers_python if args.peers_python.exists() else None
    if peers is None:
        _say(f"{args.peers_python} missing (make bench-peers): no gcsfs and KServe rows")
    work = Path(tempfile.mkdtemp(prefix="modelsync-bench-", dir=os.environ.get("BENCH_DIR")))
    all_sets = [d for d in datasets(args.quick, args.scale) if not args.only or args.only in d.key]
    wanted = {b for d in all_sets for b in d.backends}
    servers: dict[str, Server] = {}
    samples: list[Sample] = []
    resumed: list[Sample] = []
    latency: list[Sample] = []
    try:
        if "gs" in wanted:
            servers["gs"] = start_gcs(work / "gcs")
        if "s3" in wanted:
            servers["s3"] = start_s3()
        if "az" in wanted:
            servers["az"] = start_az(work / "azurite")
        for data in all_sets:
            for backend in data.backends:
                server = servers[backend]
                _say(f"{data.label} on {server.label}: publishing")
                publish(server, data, work)
                _say(f"{data.label} on {server.label}: {args.rounds} rounds")
                samples += measure_dataset(server, data, args.rounds, work, peers, work / "base")
                if data.key == "llm":
                    _say(f"{data.label}: kill -9 at 90 %, then resume")
                    resumed = resume(server, data, args.rounds, work, share=0.9)
        # The latency-shaped run takes its files from the small dataset: it runs
        # whenever that one does (``--only small`` included).
        small = next((d for d in all_sets if d.key == "small"), None)
        if "gs" in servers and small is not None:
            count = min(len(small.files), 500)
            levels = QUICK_LEVELS if args.quick else LEVELS
            lat = Dataset(
                "lat",
                f"{count} x 100 KB, {args.delay_ms:g} ms per request",
                dict(list(small.files.items())[:count]),
                ("gs",),
            )
            publish(servers["gs"], lat, work)
            _say(f"{lat.label}: concurrency sweep {levels}")
            latency = latency_sweep(
                servers["gs"], lat, args.rounds, work, args.delay_ms / 1000, levels
            )
        _say("start-up: --version and a no-op sync")
        noop = Dataset("noop", "no-op", {"model.bin": 1000, "variables/data": 1_000_000}, ())
        started = startup(work, noop, runs=3 if args.quick else 5 * args.rounds)
    finally:
        for server in servers.values():
            server.close()
        shutil.rmtree(work, ignore_errors=True)
    table = report.rows(samples + resumed)
    latency_table = report.rows(latency)
    checked = targets.evaluate(table, resumed, started)
    chosen, why = targets.choose_concurrency(latency)
    print(f"## Downloads (medians of {args.rounds} rounds, tool order rotated)\n")
    print(report.markdown(table))
    print(f"\n## Latency-shaped run ({args.delay_ms:g} ms before every answer)\n")
    print(report.markdown(latency_table))
    print(f"\nChosen small-object concurrency: {chosen} ({why})")
    print("\n## Start-up\n")
    print(report.markdown(report.rows(started)))
    print("\n## Targets (issue 23)\n")
    print(targets.markdown(checked))
    if args.json:
        doc = {
            "rows": report.as_json(table),
            "latency": report.as_json(latency_table),
            "startup": report.as_json(report.rows(started)),
            "targets": [t.__dict__ for t in checked],
            "concurrency": chosen,
        }
        args.json.write_text(json.dumps(doc, indent=2))
    failed = [s for s in samples + resumed + latency + started if s.run and not s.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
