"""kill -9 at random moments of a large sync: the store's invariants hold every time."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from modelsync.store import ModelStore, Store
from tests.helpers import check_invariants, run_cli, write_tree

FILES = 24
FILE_SIZE = 1024 * 1024


def _revision_files(version: int) -> dict[str, bytes]:
    """Half the shards change each version, so both linking and fetching are exercised."""
    files = {}
    for shard in range(FILES):
        generation = version if shard % 2 else 1
        rng = random.Random(generation * 1000 + shard)
        files[f"variables/shard-{shard:02d}"] = rng.randbytes(FILE_SIZE)
    files["saved_model.pb"] = f"graph-{version}".encode()
    return files


def _trials(tmp_path: Path, count: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    bucket = tmp_path / "bucket" / "ranker"
    store = tmp_path / "store"
    flags = ["--store", str(store), "--model", "ranker", "--source", f"file://{bucket}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}

    def publish(version: int) -> None:
        src = write_tree(tmp_path / "src" / str(version), _revision_files(version))
        out = run_cli("publish", str(src), f"file://{bucket}", "--version", str(version))
        assert out.returncode == 0, out.stderr

    publish(1)
    assert run_cli("sync", *flags).returncode == 0
    window = _calibrate(tmp_path, env)
    ms = Store(store, store / ".modelsync").model("ranker")
    phases: Counter[str] = Counter()
    for trial in range(count):
        old, new = trial + 1, trial + 2
        publish(new)
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelsync", "sync", *flags],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Half the kills anywhere in the pass, half around the swap (a few ms wide).
        if trial % 2:
            time.sleep(rng.uniform(0.0, window[1] * 1.2))
        else:
            time.sleep(max(0.0, rng.uniform(window[0] - 0.05, window[1] + 0.02)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        view = check_invariants(store, "ranker")
        phases[_phase(ms, old, new)] += 1
        where = f"trial {trial} (kill after exit code {proc.returncode})"
        assert view.violations == [], where
        assert view.active in (old, new), where
        # Invariant 3: the previous good revision is still on local disk.
        assert ms.path_of(old) is not None, where
        out = run_cli("sync", *flags)
        assert out.returncode == 0, f"{where}: clean re-run failed: {out.stderr}"
        view = check_invariants(store, "ranker")
        assert view.violations == [] and view.active == new, where
        assert ms.served_versions() == [new], where
        assert not ms.staging_root.exists() or not any(ms.staging_root.iterdir()), where
        assert ms.load_state().pending is None, where
    return phases


def _calibrate(tmp_path: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds from process start to 'downloaded and verified' and to 'committed',
    measured on a scratch copy of the same kind of sync."""
    bucket = tmp_path / "calibration" / "ranker"
    store = tmp_path / "calibration-store"
    starts, ends = [], []
    for version in (1, 2, 3):
        src = write_tree(tmp_path / "calibration-src" / str(version), _revision_files(version))
        assert (
            run_cli("publish", str(src), f"file://{bucket}", "--version", str(version)).returncode
            == 0
        )
        started = time.monotonic()
        with subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelsync",
                "sync",
                "--store",
                str(store),
                "--model",
                "ranker",
                "--source",
                f"file://{bucket}",
            ],
            env=env,
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
            assert proc.wait() == 0
    # The first sync fetches everything; later ones, like the trials, link half.
    return min(starts[1:]), max(ends[1:])


def _phase(ms: ModelStore, old: int, new: int) -> str:
    """Where the kill landed, read off the disk."""
    if ms.load_state().pending is not None:
        return "activating"
    if ms.active_version() == new:
        return "done"
    if ms.staging_root.exists() and any(ms.staging_root.iterdir()):
        return "downloading"
    return "before download"


def test_kill_9_during_sync_default(tmp_path: Path) -> None:
    """Ten SIGKILLs at random points of a 24 MiB sync never break an invariant."""
    phases = _trials(tmp_path, 10, seed=20261123)
    print("kill landed:", dict(phases))


@pytest.mark.slow
def test_kill_9_during_sync_long(tmp_path: Path) -> None:
    """Fifty SIGKILLs at random points never break an invariant."""
    phases = _trials(tmp_path, 50, seed=7)
    print("kill landed:", dict(phases))
    # The seed is fixed: this asserts the trials reach the download and the swap.
    assert phases["downloading"] > 0 and phases["activating"] + phases["done"] > 0


STRACE = shutil.which("strace")


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (.ci/run installs it)")
def test_kill_9_at_every_rename(tmp_path: Path) -> None:
    """SIGKILL delivered by strace at the Nth rename(2) of a pass, for every N: each
    state change the pass makes is a rename, so this visits every crash point."""
    assert STRACE is not None
    bucket = tmp_path / "bucket" / "ranker"
    store = tmp_path / "store"
    flags = ["--store", str(store), "--model", "ranker", "--source", f"file://{bucket}"]
    ms = Store(store, store / ".modelsync").model("ranker")

    def publish(version: int) -> None:
        src = write_tree(tmp_path / "src" / str(version), _revision_files(version))
        out = run_cli("publish", str(src), f"file://{bucket}", "--version", str(version))
        assert out.returncode == 0, out.stderr

    def traced_sync(kill_at: int | None) -> int:
        inject = ["-e", f"inject=rename:signal=KILL:when={kill_at}"] if kill_at else []
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
        out = subprocess.run(
            [
                STRACE,
                "-f",
                "-qq",
                "-o",
                str(tmp_path / "trace"),
                "-e",
                "trace=rename",
                *inject,
                sys.executable,
                "-m",
                "modelsync",
                "sync",
                *flags,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        return out.returncode

    publish(1)
    assert traced_sync(None) == 0
    publish(2)
    assert traced_sync(None) == 0
    renames = (tmp_path / "trace").read_text().count("rename(")
    assert renames >= 5
    version = 2
    for kill_at in range(1, renames + 1):
        old, version = version, version + 1
        publish(version)
        code = traced_sync(kill_at)
        assert code != 0, f"rename #{kill_at} did not kill the pass"
        view = check_invariants(store, "ranker")
        where = f"killed at rename #{kill_at}"
        assert view.violations == [], where
        assert view.active in (old, version), where
        assert ms.path_of(old) is not None, where
        assert traced_sync(None) == 0, where
        view = check_invariants(store, "ranker")
        assert (view.violations, view.active) == ([], version), where
        assert ms.load_state().pending is None, where
