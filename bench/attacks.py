"""The red team's trials in the reliability campaign (issue 11): hostile manifests,
leftovers in the served tree, files swapped for links mid-read, servers that drip
bytes, and exceptions thrown into passes. Each trial checks the invariants after it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from modelsync.backends.file import LocalSource
from modelsync.backends.gs import GcsOptions, GcsSource
from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig, default_state_dir
from modelsync.retry import RetryPolicy
from modelsync.sources.base import Source
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.backends import GcsBackend
from tests.faultproxy import FaultPlan, FaultProxy
from tests.helpers import manifest_doc, put_revision, run_cli, sidecar_flags, snapshot
from tests.linkswap import raced_reads

__all__ = ["Attacks"]

FAST_RETRY = RetryPolicy(attempts=3, initial=0.01, maximum=0.05, total=5)


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth):
        doc = {"x": doc}
    return doc


# Edits that turn a good manifest into a hostile one (issue 11 findings 1, 3, 11, 21).
HOSTILE: dict[str, Callable[[dict[str, Any]], None]] = {
    "deep metadata": lambda d: d.update(metadata=_nested(500)),
    "size 10^400": lambda d: d["files"][0].update(size=10**400),
    "size 2^63": lambda d: d["files"][0].update(size=2**63),
    "lone surrogate": lambda d: d["files"][0].update(path="\ud800x"),
    "300-byte name": lambda d: d["files"][0].update(path="n" * 300),
    "year 1": lambda d: d.update(created="0001-01-01T00:00:00+14:00"),
    "another model": lambda d: d.update(model="sandbox"),
    "another version": lambda d: d.update(version=d["version"] + 1),
}


def _containing(part: str) -> Callable[[str], bool]:
    return lambda path: part in path


class _Flaky(LocalSource):
    """A file:// source whose listings raise the queued exceptions first."""

    def __init__(self, url: str, faults: list[Exception]) -> None:
        super().__init__(url)
        self.faults = faults

    def list_versions(self, cancel: CancelToken | None = None) -> list[int]:
        if self.faults:
            raise self.faults.pop()
        return super().list_versions(cancel)


class Recorder(Protocol):
    counts: Any

    def violation(self, what: str) -> None: ...

    def check_store(self, store: Path, where: str, active_in: tuple[int, ...]) -> None: ...


class Attacks:
    def __init__(self, campaign: Recorder, work: Path, rng: random.Random) -> None:
        self.c, self.work, self.rng = campaign, work, rng

    def _files(self, seed: int) -> dict[str, bytes]:
        return {
            f"variables/shard-{i}": self.rng.randbytes(4096) + bytes([seed % 256]) for i in range(3)
        }

    def hostile_manifests(self, trials: int) -> None:
        root = self.work / "hostile"
        bucket, store = root / "bucket" / "ranker", root / "data" / "models"
        put_revision(bucket, 1, self._files(1))
        run_cli("sync", *sidecar_flags(store, bucket))
        for trial in range(trials):
            version, kind = trial + 2, self.rng.choice(sorted(HOSTILE))
            files = self._files(version)
            put_revision(bucket, version, files, manifest=False)
            doc = manifest_doc(files, version=version)
            HOSTILE[kind](doc)
            (bucket / str(version) / "modelsync-manifest.json").write_text(json.dumps(doc))
            before = snapshot(store)
            out = run_cli("sync", *sidecar_flags(store, bucket))
            where = f"hostile manifest {trial} ({kind})"
            if out.returncode != 1 or "Traceback" in out.stderr:
                self.c.violation(f"{where}: exit {out.returncode}: {out.stderr[-300:]}")
            if snapshot(store) != before:
                self.c.violation(f"{where}: the store changed")
            self.c.check_store(store, where, (1,))
            self.c.counts[f"hostile manifests ({kind})"] += 1

    def leftovers(self, trials: int) -> None:
        root = self.work / "leftovers"
        bucket, store = root / "bucket" / "ranker", root / "data" / "models"
        outside = root / "outside"
        outside.mkdir(parents=True)
        (outside / "keep").write_text("not modelsync's")
        put_revision(bucket, 1, self._files(1))
        run_cli("sync", *sidecar_flags(store, bucket))
        for trial in range(trials):
            version, kind = trial + 2, self.rng.choice(["directory", "link", "file", "current"])
            target = store / "ranker" / ("current" if kind == "current" else str(version))
            if kind == "current":
                target.unlink()
                target.mkdir()
            elif kind == "directory":
                target.mkdir()
                (target / "saved_model.pb").write_bytes(b"planted")
            elif kind == "link":
                target.symlink_to(outside)
            else:
                target.write_bytes(b"planted")
            put_revision(bucket, version, self._files(version))
            out = run_cli("sync", *sidecar_flags(store, bucket))
            where = f"leftover {trial} ({kind})"
            if out.returncode != 0:
                self.c.violation(f"{where}: exit {out.returncode}: {out.stderr[-300:]}")
            untouched = (outside / "keep").read_text() == "not modelsync's"
            if not untouched or len(list(outside.iterdir())) != 1:
                self.c.violation(f"{where}: a directory outside the store changed")
            self.c.check_store(store, where, (version,))
            self.c.counts[f"leftovers in the served tree ({kind})"] += 1

    def link_swaps(self, trials: int) -> None:
        counts = raced_reads(self.work / "swaps", trials)
        if counts.wrong:
            self.c.violation(f"link swaps: {counts.wrong} reads returned something else")
        self.c.counts["reads raced by a link swap (refused)"] += counts.refused
        self.c.counts["reads raced by a link swap (served the file)"] += counts.served

    def drips(self, trials: int, endpoint: str) -> None:
        backend = GcsBackend(endpoint, "campaign")
        proxy = FaultProxy(int(endpoint.rsplit(":", 1)[1])).start()
        store = self.work / "drips" / "data" / "models"

        def through(url: str, _options: Mapping[str, Any]) -> Source:
            return GcsSource(url, GcsOptions(endpoint=proxy.url), retry=FAST_RETRY)

        try:
            for trial in range(trials):
                version = 1000 + trial
                files = self._files(version)
                for name, data in files.items():
                    backend.put(f"{version}/{name}", data)
                doc = manifest_doc(files, "ranker", version)
                backend.put(f"{version}/modelsync-manifest.json", json.dumps(doc).encode())
                stage = self.rng.choice(["delimiter", "manifest", "shard-"])
                proxy.plan = FaultPlan(throttle=20, slow=_containing(stage))
                syncer = Syncer(
                    Store(store, default_state_dir(store)), retry=FAST_RETRY, sources=through
                )
                before = snapshot(store)
                started = time.monotonic()
                result = syncer.sync(
                    ModelConfig(name="ranker", source=backend.url),
                    CancelToken(deadline=time.monotonic() + 1),
                )
                took = time.monotonic() - started
                syncer.close()
                where = f"drip {trial} ({stage})"
                if result.outcome is not Outcome.FAILED or took > 3:
                    self.c.violation(f"{where}: {result.outcome.value} after {took:.1f} s")
                if snapshot(store) != before:
                    self.c.violation(f"{where}: the store changed")
                self.c.counts["passes against a dripping server"] += 1
        finally:
            proxy.stop()

    def exceptions(self, trials: int) -> None:
        root = self.work / "exceptions"
        bucket, store = root / "bucket" / "ranker", root / "data" / "models"
        kinds: list[type[Exception]] = [RuntimeError, KeyError, ValueError, TypeError, OSError]
        for trial in range(trials):
            version = trial + 1
            put_revision(bucket, version, self._files(version))
            fault = self.rng.choice(kinds)(f"injected {trial}")
            queued: list[Exception] = [fault]

            def flaky(
                url: str, _options: Mapping[str, Any], queued: list[Exception] = queued
            ) -> Source:
                return _Flaky(url, queued)

            syncer = Syncer(Store(store, default_state_dir(store)), sources=flaky)
            model = ModelConfig(name="ranker", source=f"file://{bucket}")
            where = f"exception {trial} ({type(fault).__name__})"
            try:
                first = syncer.sync(model, CancelToken())
                second = syncer.sync(model, CancelToken())
            except Exception as exc:
                self.c.violation(f"{where}: the pass raised {exc!r}")
                continue
            if first.outcome is not Outcome.FAILED or second.outcome is not Outcome.ACTIVATED:
                self.c.violation(f"{where}: {first.outcome.value}, then {second.outcome.value}")
            self.c.check_store(store, where, (version,))
            self.c.counts["exceptions thrown into a pass"] += 1
