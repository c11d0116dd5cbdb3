from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.errors import ConfigError
from modelsync.volume import Store
from tests.helpers import admitted, check_invariants, manifest_doc, model_files, write_tree


def _staged(store: Store, name: str, version: int) -> Path:
    ms = store.model(name)
    path = ms.new_staging(version)
    files = model_files(version)
    write_tree(path, files)
    import json

    (path / "modelsync-manifest.json").write_text(json.dumps(manifest_doc(files, name, version)))
    return path


@pytest.fixture
def st(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store", tmp_path / "store" / ".modelsync")
    store.prepare()
    return store


def test_activate_commit_keeps_previous_until_commit(st: Store) -> None:
    """The previous version stays served until commit, then moves to the cache."""
    ms = st.model("m")
    state = ms.load_state()
    ms.activate(admitted(ms, 1, _staged(st, "m", 1)), None, state)
    ms.commit(state, keep=2, now=1.0)
    ms.activate(admitted(ms, 2, _staged(st, "m", 2)), 1, state)
    assert ms.served_versions() == [1, 2]
    assert ms.active_version() == 2
    assert ms.load_state().pending is not None
    ms.commit(state, keep=2, now=2.0)
    assert ms.served_versions() == [2]
    assert ms.cached_versions() == [1]
    assert ms.load_state().pending is None
    assert check_invariants(st.root, "m").violations == []


def test_keep_trims_the_cache(st: Store) -> None:
    """With keep=2 only one older revision is retained; older ones are removed."""
    ms = st.model("m")
    state = ms.load_state()
    previous = None
    for version in (1, 2, 3, 4):
        ms.activate(admitted(ms, version, _staged(st, "m", version)), previous, state)
        ms.commit(state, keep=2, now=float(version))
        previous = version
    assert ms.active_version() == 4
    assert ms.cached_versions() == [3]


def test_rollback_restores_exactly(st: Store) -> None:
    """After a rollback the served tree is byte-for-byte what it was before."""
    from tests.helpers import snapshot

    ms = st.model("m")
    state = ms.load_state()
    ms.activate(admitted(ms, 1, _staged(st, "m", 1)), None, state)
    ms.commit(state, keep=2, now=1.0)
    before = snapshot(ms.dir)
    ms.activate(admitted(ms, 2, _staged(st, "m", 2)), 1, state)
    ms.rollback(state)
    assert snapshot(ms.dir) == before
    assert (ms.quarantine_dir / "2").is_dir()


def test_activating_an_older_version_hides_newer_ones(st: Store) -> None:
    """Going back to an older version moves newer ones out (latest-version servers)."""
    ms = st.model("m")
    state = ms.load_state()
    ms.activate(admitted(ms, 1, _staged(st, "m", 1)), None, state)
    ms.commit(state, keep=3, now=1.0)
    ms.activate(admitted(ms, 2, _staged(st, "m", 2)), 1, state)
    ms.commit(state, keep=3, now=2.0)
    path = ms.path_of(1)
    assert path is not None
    ms.activate(admitted(ms, 1, path), 2, state, retire_to="cache")
    assert ms.served_versions() == [1]
    assert ms.active_version() == 1
    ms.commit(state, keep=3, now=3.0)
    assert ms.cached_versions() == [2]


def test_recover_finishes_a_moved_tree_and_forgets_an_unmoved_one(st: Store) -> None:
    """A journal whose tree is in place is finished; one whose tree never arrived is dropped."""
    ms = st.model("m")
    state = ms.load_state()
    ms.activate(admitted(ms, 1, _staged(st, "m", 1)), None, state)
    ms.commit(state, keep=2, now=1.0)
    # Simulate a crash after the move but before the swap.
    state.pending = None
    staged = _staged(st, "m", 2)
    from modelsync.fsutil import move_dir
    from modelsync.state import Pending

    state.pending = Pending(2, 1)
    ms.save_state(state)
    move_dir(staged, ms.dir / "2")
    assert ms.active_version() == 1
    state = ms.load_state()
    ms.resume(admitted(ms, 2, ms.dir / "2"), state)
    assert ms.active_version() == 2
    # A journal for a version whose tree never moved in is undone: nothing changes.
    state = ms.load_state()
    state.pending = Pending(3, 2)
    ms.save_state(state)
    ms.abandon(state)
    assert ms.load_state().pending is None
    assert ms.active_version() == 2


def test_reuse_index_maps_hashes_to_retained_files(st: Store) -> None:
    """Files of retained revisions are offered for hard-linking by sha256."""
    ms = st.model("m")
    state = ms.load_state()
    ms.activate(admitted(ms, 1, _staged(st, "m", 1)), None, state)
    ms.commit(state, keep=2, now=1.0)
    index = ms.reuse_index()
    assert len(index) == 3
    assert all(path.is_file() for path in index.values())


def test_dangling_or_foreign_current_is_not_active(st: Store) -> None:
    """A current link to nothing, or to a non-version, means no active version."""
    ms = st.model("m")
    ms.dir.mkdir(parents=True)
    os.symlink("7", ms.current)
    assert ms.active_version() is None
    os.unlink(ms.current)
    os.symlink("/etc", ms.current)
    assert ms.active_version() is None


def test_lock_excludes_a_second_holder(st: Store) -> None:
    """A second locker gives up with a clear error once its deadline passes."""
    import time

    ms = st.model("m")
    with ms.lock(CancelToken()):
        import subprocess
        import sys

        code = (
            "import time,sys\n"
            "from pathlib import Path\n"
            "from modelsync.volume import Store\n"
            "from modelsync.cancel import CancelToken\n"
            f"s=Store(Path({str(st.root)!r}), Path({str(st.state_dir)!r})).model('m')\n"
            "try:\n"
            "    with s.lock(CancelToken(deadline=time.monotonic()+0.5)): sys.exit(0)\n"
            "except Exception as e:\n"
            "    print(e); sys.exit(3)\n"
        )
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert out.returncode == 3, out.stderr
        assert "another modelsync process" in out.stdout
        assert time.monotonic() - started < 10


def test_prepare_refuses_state_dir_on_another_filesystem(tmp_path: Path) -> None:
    """Renames between store and state_dir must be atomic: same filesystem only."""
    if Path("/dev/shm").stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm is on the same filesystem here")
    store = Store(tmp_path / "s", Path("/dev/shm") / f"modelsync-test-{os.getpid()}")
    try:
        with pytest.raises(ConfigError, match=r"another filesystem.*set state_dir"):
            store.prepare()
    finally:
        import shutil

        shutil.rmtree(store.state_dir, ignore_errors=True)
