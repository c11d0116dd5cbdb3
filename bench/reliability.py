"""The reliability campaign: faults, kills, corruption and fuzzing, then the invariants.

    python -m bench.reliability --short      (CI, a few minutes)
    python -m bench.reliability              (the long form, by hand)

With a fixed seed it runs, and counts:
  - kill -9 trials: `modelsync sync` killed at random moments of a 24 MiB sync;
  - fault syncs: gs:// syncs through the fault proxy with 30 % of requests faulted;
  - corruption trials: one object of a new revision damaged (byte flipped, truncated,
    extended) in the bucket;
  - fuzzed inputs: hypothesis-generated manifests, object names and config files;
  - the red team's trials (bench/attacks.py): hostile manifests, leftovers in the
    served tree, files swapped for links mid-read, servers dripping bytes past a
    pass's deadline, exceptions thrown into passes.
After every trial it checks DESIGN.md's invariants on disk (only complete, verified
revisions under <store>/<model>/, current valid, the previous good revision kept,
the store unchanged by a failed sync) and ends with the number of violations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis.strategies import SearchStrategy

from bench.attacks import Attacks
from modelsync.backends.gs import GcsOptions, GcsSource
from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.logs import configure_logging
from modelsync.retry import RetryPolicy
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.backends import GcsBackend
from tests.faultproxy import FaultPlan, FaultProxy
from tests.gcs_emulator import start as start_emulator
from tests.helpers import (
    check_invariants,
    manifest_doc,
    run_cli,
    sidecar_flags,
    snapshot,
    write_tree,
)
from tests.killtrials import KillTrials
from tests.properties import (
    CONFIGS,
    MANIFESTS,
    PATHS,
    check_config,
    check_manifest_doc,
    check_object_name,
)

FAST_RETRY = RetryPolicy(attempts=12, initial=0.01, maximum=0.2, total=120)


class Campaign:
    def __init__(self, work: Path, rng: random.Random) -> None:
        self.work = work
        self.rng = rng
        self.counts: Counter[str] = Counter()
        self.violations: list[str] = []

    def violation(self, what: str) -> None:
        self.violations.append(what)
        print(f"VIOLATION: {what}", file=sys.stderr, flush=True)

    def check_store(self, store: Path, where: str, active_in: tuple[int, ...]) -> None:
        view = check_invariants(store, "ranker")
        for problem in view.violations:
            self.violation(f"{where}: {problem}")
        if view.active not in active_in:
            self.violation(f"{where}: active {view.active}, expected one of {active_in}")

    # -- kill -9 ---------------------------------------------------------------------

    def kills(self, trials: int) -> None:
        runner = KillTrials(self.work / "kills", self.rng)
        for _ in range(trials):
            _, problems = runner.run()
            for problem in problems:
                self.violation(problem)
            self.counts["kill -9 trials"] += 1

    # -- faults ----------------------------------------------------------------------

    def faults(self, syncs: int, endpoint: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="campaign",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
        client.create_bucket("campaign")
        client.close()
        backend = GcsBackend(endpoint, "campaign")
        proxy = FaultProxy(int(endpoint.rsplit(":", 1)[1])).start()
        store = self.work / "faults" / "store"
        try:
            syncer = Syncer(
                Store(store, store / ".modelsync"),
                retry=FAST_RETRY,
                sources=lambda url, _options: GcsSource(
                    url, GcsOptions(endpoint=proxy.url), retry=FAST_RETRY
                ),
            )
            model = ModelConfig(name="ranker", source=backend.url)
            for index in range(syncs):
                version = index + 1
                files = {
                    f"variables/shard-{i:02d}": self.rng.randbytes(32 * 1024) for i in range(12)
                }
                for name, data in files.items():
                    backend.put(f"{version}/{name}", data)
                backend.put(
                    f"{version}/modelsync-manifest.json",
                    json.dumps(manifest_doc(files, "ranker", version)).encode(),
                )
                proxy.plan = FaultPlan(rate=0.3, seed=self.rng.randrange(2**32))
                result = syncer.sync(model, CancelToken(deadline=time.monotonic() + 300))
                proxy.plan = FaultPlan()
                where = f"fault sync {index}"
                if result.outcome is not Outcome.ACTIVATED:
                    self.violation(f"{where}: {result.outcome.value}: {result.error}")
                for name, data in files.items():
                    if (store / "ranker" / "current" / name).read_bytes() != data:
                        self.violation(f"{where}: {name} differs")
                self.check_store(store, where, (version,))
                self.counts["syncs at 30 % faults"] += 1
                self.counts["faults injected"] = sum(proxy.faults.values())
            syncer.close()
        finally:
            proxy.stop()

    # -- corruption ------------------------------------------------------------------

    def corruption(self, trials: int) -> None:
        root = self.work / "corruption"
        bucket = root / "bucket" / "ranker"
        store = root / "store"
        flags = sidecar_flags(store, bucket)
        files = {f"variables/shard-{i:02d}": self.rng.randbytes(20_000) for i in range(5)}
        src = write_tree(root / "src", files)
        run_cli("publish", str(src), f"file://{bucket}", "--version", "1")
        run_cli("sync", *flags)
        for trial in range(trials):
            version = trial + 2
            changed = {k: self.rng.randbytes(20_000) for k in files}
            src = write_tree(root / f"src{version}", changed)
            run_cli("publish", str(src), f"file://{bucket}", "--version", str(version))
            shutil.rmtree(src)
            victim = bucket / str(version) / self.rng.choice(sorted(changed))
            data = bytearray(victim.read_bytes())
            how = self.rng.choice(["flip", "truncate", "extend"])
            if how == "flip":
                data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
            elif how == "truncate":
                del data[self.rng.randrange(len(data)) :]
            else:
                data += b"\0" * self.rng.randint(1, 5000)
            victim.write_bytes(bytes(data))
            before = snapshot(store / "ranker")
            out = run_cli("sync", *flags)
            where = f"corruption trial {trial} ({how})"
            if out.returncode != 1:
                self.violation(f"{where}: sync exited {out.returncode}, expected 1")
            if snapshot(store / "ranker") != before:
                self.violation(f"{where}: the store changed")
            self.check_store(store, where, (1,))
            self.counts[f"corrupted objects ({how})"] += 1

    # -- fuzzing ---------------------------------------------------------------------

    def fuzz(self, examples: int, campaign_seed: int) -> None:
        for name, strategy, check in (
            ("fuzzed manifests", MANIFESTS, check_manifest_doc),
            ("fuzzed object names", PATHS, check_object_name),
            ("fuzzed config files", CONFIGS, check_config),
        ):
            self._fuzz_one(name, strategy, check, examples, campaign_seed)

    def _fuzz_one(
        self,
        name: str,
        strategy: SearchStrategy[Any],
        check: Callable[[Any], None],
        examples: int,
        campaign_seed: int,
    ) -> None:
        def counted(value: object) -> None:
            self.counts[name] += 1
            try:
                check(value)
            except AssertionError as exc:
                self.violation(f"{name}: {exc} for {value!r}"[:300])

        runner = seed(campaign_seed)(
            settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )(given(strategy)(counted))
        )
        runner()


def main() -> int:
    parser = argparse.ArgumentParser(description="modelsync reliability campaign")
    parser.add_argument("--short", action="store_true", help="the CI form (a few minutes)")
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args()
    kills, syncs, corrupt, fuzz = (10, 5, 20, 200) if args.short else (100, 30, 200, 3000)
    hostile, swaps, drips = (16, 200, 6) if args.short else (100, 2000, 30)
    configure_logging("error", "json")
    os.environ["DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"] = "true"
    work = Path(tempfile.mkdtemp(prefix="modelsync-campaign-"))
    campaign = Campaign(work, random.Random(args.seed))
    started = time.monotonic()
    emulator, endpoint = start_emulator()
    try:
        print(
            f"seed {args.seed}: {kills} kills, {syncs} fault syncs, {corrupt} corruptions, "
            f"{fuzz} examples per fuzz target",
            flush=True,
        )
        campaign.kills(kills)
        campaign.faults(syncs, endpoint)
        campaign.corruption(corrupt)
        campaign.fuzz(fuzz, args.seed)
        attacks = Attacks(campaign, work, campaign.rng)
        attacks.hostile_manifests(hostile)
        attacks.leftovers(hostile)
        attacks.link_swaps(swaps)
        attacks.drips(drips, endpoint)
        attacks.exceptions(hostile)
    finally:
        emulator.terminate()
        emulator.wait()
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k in campaign.counts)
    print(f"\n| {'trial':<{width}} | count")
    print(f"|{'-' * (width + 2)}|------")
    for key, value in sorted(campaign.counts.items()):
        print(f"| {key:<{width}} | {value}")
    print(
        f"\n{len(campaign.violations)} invariant violations "
        f"(seed {args.seed}, {time.monotonic() - started:.0f} s)"
    )
    return 1 if campaign.violations else 0


if __name__ == "__main__":
    sys.exit(main())
