from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import default_state_dir
from modelsync.errors import ConfigError
from modelsync.volume import Store
from tests.helpers import (
    admitted,
    bind_unix_socket,
    check_invariants,
    manifest_doc,
    model_files,
    put_revision,
    run_cli,
    sidecar_flags,
    write_tree,
)


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


def _failed_sync(flags: list[str]) -> tuple[str, float]:
    """Run `modelsync sync`, which must fail in one line: (that error, seconds taken)."""
    import json
    import time

    started = time.monotonic()
    done = run_cli("sync", *flags, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    failed = [json.loads(line) for line in done.stderr.splitlines() if "sync failed" in line]
    assert len(failed) == 1, done.stderr
    return str(failed[0]["error"]), took


def _link_to_a_kept_file(path: Path, aim: Path) -> None:
    aim.write_bytes(b"keep")
    os.symlink(aim, path)


@pytest.mark.parametrize(
    ("plant", "says"),
    [
        (lambda p, _: os.mkfifo(p), "not a regular file (a FIFO); not opened"),
        (lambda p, _: p.mkdir(), "not a regular file (a directory); not opened"),
        (lambda p, _aim: bind_unix_socket(p), "not a regular file (a socket); not opened"),
        (lambda p, aim: os.symlink(aim, p), "is a symbolic link; not followed"),
        (_link_to_a_kept_file, "is a symbolic link; not followed"),
    ],
    ids=["fifo", "directory", "socket", "link-to-a-new-file", "link-to-a-file"],
)
def test_a_planted_lock_file_fails_the_pass_in_one_line(
    tmp_path: Path, bucket: Path, store: Path, plant: object, says: str
) -> None:
    """Something else than a regular file at <state>/locks/<model>.lock (red team
    finding 10): `modelsync sync` fails at once (a FIFO does not block it past any
    deadline) with one line naming the path and what is there, creates or opens
    nothing where a link points, and revision 1 stays active; once the entry is
    gone, the next pass activates revision 2."""
    put_revision(bucket, 1, model_files(1))
    flags = sidecar_flags(store, bucket)
    assert run_cli("sync", *flags).returncode == 0
    put_revision(bucket, 2, model_files(2))
    lock = default_state_dir(store) / "locks" / "ranker.lock"
    lock.unlink()
    aim = tmp_path / "aimed-at"
    plant(lock, aim)  # type: ignore[operator]
    error, took = _failed_sync(flags)
    assert error == f"{lock}: {says}"
    assert took < 15
    assert os.readlink(store / "ranker" / "current") == "1"
    assert (store / "ranker" / "1" / "saved_model.pb").read_bytes() == b"graph-1"
    assert not (store / "ranker" / "2").exists()
    assert not aim.exists() or aim.read_bytes() == b"keep"
    if lock.is_dir() and not lock.is_symlink():
        lock.rmdir()
    else:
        lock.unlink()
    assert run_cli("sync", *flags).returncode == 0
    assert os.readlink(store / "ranker" / "current") == "2"


def test_a_read_only_store_volume_fails_the_pass_in_one_line(tmp_path: Path, bucket: Path) -> None:
    """The store's volume remounted read-only (an operator mistake): the pass fails in
    one line naming the lock file and the cause, not a traceback; revision 1 stays
    active, and once the volume is writable again revision 2 is activated."""
    import subprocess

    volume = tmp_path / "volume"
    volume.mkdir()
    if os.geteuid() != 0 or not Path("/usr/bin/mount").exists():
        pytest.skip("cannot mount a tmpfs here (not root)")
    mount = ["/usr/bin/mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(volume)]
    if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        store = volume / "models"
        put_revision(bucket, 1, model_files(1))
        flags = sidecar_flags(store, bucket)
        assert run_cli("sync", *flags).returncode == 0
        put_revision(bucket, 2, model_files(2))
        remount = ["/usr/bin/mount", "-o", "remount,ro", str(volume)]
        subprocess.run(remount, check=True)
        error, _ = _failed_sync(flags)
        lock = default_state_dir(store) / "locks" / "ranker.lock"
        assert error.startswith(f"cannot open {lock}: Read-only file system"), error
        assert os.readlink(store / "ranker" / "current") == "1"
        subprocess.run(["/usr/bin/mount", "-o", "remount,rw", str(volume)], check=True)
        assert run_cli("sync", *flags).returncode == 0
        assert os.readlink(store / "ranker" / "current") == "2"
    finally:
        subprocess.run(["/usr/bin/umount", str(volume)], check=False)


def test_a_sync_that_waits_for_the_model_lock_says_so(tmp_path: Path, bucket: Path) -> None:
    """Red team round 4b: a `sync` waiting on the lock another process holds printed
    nothing for up to pass_timeout (30 min by default). It says once, within about a
    second, what it waits for and for how long, then fails in one line at its deadline."""
    store_root = tmp_path / "store"
    put_revision(bucket / "ranker", 1, model_files(1))
    config = tmp_path / "modelsync.toml"
    config.write_text(
        f'store = "{store_root}"\npass_timeout = "4s"\n\n'
        f'[[models]]\nname = "ranker"\nsource = "file://{bucket / "ranker"}"\n'
    )
    held = Store(store_root, default_state_dir(store_root))
    held.prepare()
    with held.model("ranker").lock(CancelToken()):
        done = run_cli("--log-format", "json", "sync", "--config", str(config), timeout=60)
    assert done.returncode == 1, done.stderr
    waiting = [line for line in done.stderr.splitlines() if "release the model's lock" in line]
    assert len(waiting) == 1, done.stderr
    said = json.loads(waiting[0])
    assert said["model"] == "ranker" and 0 < said["up_to_s"] <= 4
    assert "another modelsync process holds" in done.stderr.splitlines()[-1]
