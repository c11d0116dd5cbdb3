"""Run the variant campaign: every class, every backend it means something on.

    python -m bench.variants --short            CI form (all classes, ~4 min on 2 cores)
    python -m bench.variants --long             by hand (10x the short form)
    python -m bench.variants --trials N         N trials per class and backend
    python -m bench.variants --class roads --backend file --trial-seed S   one trial again

Each trial draws its input from its own seed (printed); a failing trial prints its
problems and the one line that runs it again. Exits 1 when an enforced invariant is
violated; class ``signed`` (signed channel pointers, being built) is reported as
PENDING and only enforced with ``--enforce-pending``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.variants.blockers import blockers
from bench.variants.core import Generator, Record, Trial
from bench.variants.deadlines import deadlines
from bench.variants.edges import edges
from bench.variants.hostile import hostile
from bench.variants.lies import lies
from bench.variants.roads import roads
from bench.variants.signed import signed_channels
from bench.variants.world import Endpoints

__all__ = ["CLASSES", "main"]

NETWORK = ("gs", "s3", "az")
ALL = ("file", *NETWORK)


@dataclass(frozen=True)
class Class:
    generator: Generator
    backends: tuple[str, ...]
    short: dict[str, int]  # trials per backend in the short form
    pending: bool = False  # the feature has not landed: reported, not enforced


CLASSES: dict[str, Class] = {
    "roads": Class(roads, ALL, {"file": 8, "gs": 2, "s3": 2, "az": 2}),
    "hostile": Class(hostile, ALL, {"file": 8, "gs": 3, "s3": 3, "az": 3}),
    "deadlines": Class(deadlines, ALL, {"file": 4, "gs": 3, "s3": 3, "az": 3}),
    "signed": Class(signed_channels, ("file", "s3"), {"file": 4, "s3": 1}),
    "edges": Class(edges, ("file", "gs"), {"file": 5, "gs": 1}),
    "lies": Class(lies, NETWORK, {"gs": 3, "s3": 2, "az": 2}),
    "blockers": Class(blockers, ("file", "s3"), {"file": 3, "s3": 2}),
}


def trial_seed(seed: int, cls: str, backend: str, index: int) -> int:
    return random.Random(f"{seed}/{cls}/{backend}/{index}").randrange(2**31)


def _start(needed: set[str], work: Path) -> tuple[Endpoints, list[Callable[[], Any]]]:
    from tests.emulators import start_azurite, start_moto, stop

    endpoints, stops = Endpoints(), []
    if "gs" in needed:
        from tests.backends import GcsBackend
        from tests.gcs_emulator import start

        proc, endpoints.gs = start()
        stops.append(lambda: stop(proc))
        _gcs_bucket(endpoints.gs)
        assert isinstance(GcsBackend(endpoints.gs, "campaign").url, str)
    if "s3" in needed:
        from tests.backends import S3Backend

        moto, endpoints.s3 = start_moto()
        stops.append(lambda: stop(moto))
        S3Backend(endpoints.s3, "campaign").create()
    if "az" in needed:
        from tests.backends import AzureBackend

        azurite, endpoints.az = start_azurite(work / "azurite")
        stops.append(lambda: stop(azurite))
        AzureBackend(endpoints.az, "campaign").create()
    return endpoints, stops


def _gcs_bucket(endpoint: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="campaign",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )
    client.create_bucket("campaign")
    client.close()


def plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """(class, backend, trial seed) for every trial of this run."""
    classes = args.cls or list(CLASSES)
    out = []
    for name in classes:
        spec = CLASSES[name]
        backends = [b for b in spec.backends if not args.backend or b in args.backend]
        for backend in backends:
            if args.trial_seed is not None:
                out.append((name, backend, args.trial_seed))
                continue
            count = args.trials if args.trials is not None else spec.short[backend]
            if args.long and args.trials is None:
                count *= 10
            out += [(name, backend, trial_seed(args.seed, name, backend, i)) for i in range(count)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="modelsync variant campaign (issue 21)")
    parser.add_argument("--short", action="store_true", help="the CI form (the default)")
    parser.add_argument("--long", action="store_true", help="10x the short form, by hand")
    parser.add_argument("--trials", type=int, help="trials per class and backend")
    parser.add_argument("--seed", type=int, default=int(time.strftime("%Y%m%d")))
    parser.add_argument("--class", dest="cls", action="append", choices=sorted(CLASSES))
    parser.add_argument("--backend", action="append", choices=ALL)
    parser.add_argument("--trial-seed", type=int, help="run one trial again (with --class)")
    parser.add_argument(
        "--enforce-pending", action="store_true", help="count class 'signed' in the exit code"
    )
    args = parser.parse_args(argv)
    trials = plan(args)
    os.environ["DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"] = "true"
    work = Path(tempfile.mkdtemp(prefix="modelsync-variants-"))
    started = time.monotonic()
    print(f"variant campaign: seed {args.seed}, {len(trials)} trials, work {work}", flush=True)
    record = Record()
    endpoints, stops = _start({b for _, b, _ in trials}, work)
    try:
        for name, backend, seed in trials:
            spec = CLASSES[name]
            pending = spec.pending and not args.enforce_pending
            record.run(Trial(name, backend, seed), spec.generator, work, endpoints, pending)
    finally:
        for stop in stops:
            stop()
        shutil.rmtree(work, ignore_errors=True)
    return summary(record, args.seed, time.monotonic() - started)


def summary(record: Record, seed: int, seconds: float) -> int:
    runs: Counter[tuple[str, str]] = Counter()
    fails: Counter[tuple[str, str]] = Counter()
    for result in record.results:
        key = (result.trial.cls, result.trial.backend)
        runs[key] += 1
        fails[key] += bool(result.problems)
    print("\n| class | backend | trials | failed |\n|---|---|---:|---:|")
    for key in sorted(runs):
        print(f"| {key[0]} | {key[1]} | {runs[key]} | {fails[key]} |")
    enforced = [r for r in record.results if r.problems and not r.pending]
    pending = [r for r in record.results if r.problems and r.pending]
    if enforced or pending:
        print("\nreproductions:")
        for result in enforced + pending:
            tag = "PENDING " if result.pending else ""
            print(f"  {tag}{result.trial.repro()}")
            for problem in result.problems[:4]:
                print(f"      {problem[:300]}")
    print(
        f"\n{len(record.results)} trials, {len(enforced)} failed, {len(pending)} failed in "
        f"pending classes (seed {seed}, {seconds:.0f} s)",
        flush=True,
    )
    return 1 if enforced else 0


if __name__ == "__main__":
    sys.exit(main())
