"""kill -9 trials of `modelsync sync`, shared by tests/test_crash.py and the campaign.

Each trial publishes a new revision, starts a real `modelsync sync`, kills it with
SIGKILL at a chosen moment, checks the store's invariants, re-runs the sync cleanly
and checks again. Problems are returned, not raised, so a campaign can count them.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from modelsync.config import default_state_dir
from modelsync.store import ModelStore
from modelsync.volume import Store
from tests.helpers import check_invariants, run_cli, sidecar_flags, write_tree

FILES = 24
FILE_SIZE = 1024 * 1024


def revision_files(version: int) -> dict[str, bytes]:
    """Half the shards change each version, so both linking and fetching are exercised."""
    files = {}
    for shard in range(FILES):
        generation = version if shard % 2 else 1
        rng = random.Random(generation * 1000 + shard)
        files[f"variables/shard-{shard:02d}"] = rng.randbytes(FILE_SIZE)
    files["saved_model.pb"] = f"graph-{version}".encode()
    return files


class KillTrials:
    """A local bucket and store in ``root``, with revision 1 synced and the timing of a
    pass measured, ready for trials."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.bucket = root / "bucket" / "ranker"
        self.store = root / "store"
        self.flags = sidecar_flags(self.store, self.bucket)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
        self.ms: ModelStore = Store(self.store, default_state_dir(self.store)).model("ranker")
        self._publish(self.bucket, 1)
        if run_cli("sync", *self.flags).returncode != 0:
            raise RuntimeError("the first sync failed")
        self.window = self._calibrate()
        self.trials = 0

    def _publish(self, bucket: Path, version: int) -> None:
        src = write_tree(self.root / "src" / str(version), revision_files(version))
        out = run_cli("publish", str(src), f"file://{bucket}", "--version", str(version))
        if out.returncode != 0:
            raise RuntimeError(out.stderr)

    def _calibrate(self) -> tuple[float, float]:
        """Seconds from process start to 'downloaded and verified' and to 'committed',
        measured on a scratch bucket and store with the same kind of revisions."""
        bucket = self.root / "calibration" / "ranker"
        flags = sidecar_flags(self.root / "calibration-store", bucket)
        starts, ends = [], []
        for version in (1, 2, 3):
            self._publish(bucket, version)
            started = time.monotonic()
            with subprocess.Popen(
                [sys.executable, "-m", "modelsync", "sync", *flags],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            ) as proc:
                assert proc.stderr is not None
                for line in proc.stderr:
                    if "downloaded and verified" in line:
                        starts.append(time.monotonic() - started)
                    elif "committed" in line:
                        ends.append(time.monotonic() - started)
        # The first sync fetches everything; later ones, like the trials, link half.
        return min(starts[1:]), max(ends[1:])

    def run(self) -> tuple[str, list[str]]:
        """One trial: where the kill landed, and every invariant it broke."""
        self.trials += 1
        old, new = self.trials, self.trials + 1
        self._publish(self.bucket, new)
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelsync", "sync", *self.flags],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Half the kills anywhere in the pass, half around the swap (a few ms wide).
        if self.trials % 2:
            time.sleep(self.rng.uniform(0.0, self.window[1] * 1.2))
        else:
            time.sleep(max(0.0, self.rng.uniform(self.window[0] - 0.05, self.window[1] + 0.02)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        where = f"kill trial {self.trials}"
        phase = self._phase(new)
        view = check_invariants(self.store, "ranker")
        problems = [f"{where}: {p}" for p in view.violations]
        if view.active not in (old, new):
            problems.append(f"{where}: active {view.active}, expected {old} or {new}")
        if self.ms.path_of(old) is None:  # invariant 3: the previous good revision stays
            problems.append(f"{where}: previous good revision {old} is gone")
        out = run_cli("sync", *self.flags)
        if out.returncode != 0:
            problems.append(f"{where}: clean re-run failed: {out.stderr[-300:]}")
        view = check_invariants(self.store, "ranker")
        problems += [f"{where} after re-run: {p}" for p in view.violations]
        if view.active != new or self.ms.served_versions() != [new]:
            problems.append(f"{where} after re-run: serving {self.ms.served_versions()}")
        if self.ms.staging_root.exists() and any(self.ms.staging_root.iterdir()):
            problems.append(f"{where} after re-run: staging left behind")
        if self.ms.load_state().pending is not None:
            problems.append(f"{where} after re-run: journal left behind")
        return phase, problems

    def _phase(self, new: int) -> str:
        """Where the kill landed, read off the disk."""
        if self.ms.load_state().pending is not None:
            return "activating"
        if self.ms.active_version() == new:
            return "done"
        if self.ms.staging_root.exists() and any(self.ms.staging_root.iterdir()):
            return "downloading"
        return "before download"
