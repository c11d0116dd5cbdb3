"""kill -9 at random moments of a large sync: the store's invariants hold every time."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from modelsync.config import default_state_dir
from modelsync.volume import Store
from tests.helpers import check_invariants, run_cli, sidecar_flags, write_tree
from tests.killtrials import KillTrials, revision_files


def _trials(tmp_path: Path, count: int, seed: int) -> Counter[str]:
    trials = KillTrials(tmp_path, random.Random(seed))
    phases: Counter[str] = Counter()
    for _ in range(count):
        phase, problems = trials.run()
        assert problems == []
        phases[phase] += 1
    return phases


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
    flags = sidecar_flags(store, bucket)
    ms = Store(store, default_state_dir(store)).model("ranker")

    def publish(version: int) -> None:
        src = write_tree(tmp_path / "src" / str(version), revision_files(version))
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
