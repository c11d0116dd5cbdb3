"""Running out of space mid-download: a clear line, staging removed, the active revision
still served. A small tmpfs is the store where the machine allows mounting one (root);
otherwise a file-size limit (RLIMIT_FSIZE) in the child enforces the same failure."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelsync.config import default_state_dir
from tests.helpers import (
    check_invariants,
    model_files,
    run_cli,
    sidecar_flags,
    snapshot,
    write_tree,
)


def _try_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not Path("/usr/bin/mount").exists():
        return False
    done = subprocess.run(
        ["/usr/bin/mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture(params=["tmpfs", "file-size limit"])
def small_store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, bool]]:
    """(store path, True if it is on an 8 MiB tmpfs; False: use the file-size limit).

    The volume is mounted one level above the store, as docs/servers.md tells users,
    so that the state directory beside the store shares its filesystem."""
    volume = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    volume.mkdir()
    store = volume / "models"
    if request.param == "file-size limit":
        yield store, False
        return
    mounted = _try_tmpfs(volume, "8m")
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (not root); the file-size limit case runs")
    yield store, mounted
    if mounted:
        subprocess.run(["/usr/bin/umount", str(volume)], check=False)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))


def test_disk_full_fails_cleanly_and_keeps_serving(
    tmp_path: Path, bucket: Path, small_store: tuple[Path, bool]
) -> None:
    """A revision that does not fit: exit 1, one line naming the path, staging gone,
    the active revision intact and still behind current."""
    store, mounted = small_store
    flags = sidecar_flags(store, bucket)
    src = write_tree(tmp_path / "v1", model_files(1))
    assert run_cli("publish", str(src), f"file://{bucket}", "--version", "1").returncode == 0
    assert run_cli("sync", *flags).returncode == 0
    before = snapshot(store / "ranker")
    # Many two-byte files: the declared size passes the free-space check, but each file
    # takes a page of the tmpfs (distinct bytes: files with the same content would be
    # links); and one 1 MB file passes no file-size limit of 512 KiB.
    files = {f"variables/shard-{i:05d}": i.to_bytes(2, "big") for i in range(4000)}
    files["variables/big"] = os.urandom(1024 * 1024)
    src = write_tree(tmp_path / "v2", files)
    assert run_cli("publish", str(src), f"file://{bucket}", "--version", "2").returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    out = subprocess.run(
        [sys.executable, "-m", "modelsync", "--log-format", "console", "sync", *flags],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        preexec_fn=None if mounted else _limit_file_size,
    )
    assert out.returncode == 1, out.stderr
    errors = [line for line in out.stderr.splitlines() if "sync failed" in line]
    assert len(errors) == 1, out.stderr[-3000:]
    expected = "No space left on device" if mounted else "File too large"
    assert expected in errors[0] and "cannot write" in errors[0]
    assert snapshot(store / "ranker") == before
    assert check_invariants(store, "ranker").violations == []
    staging = default_state_dir(store) / "staging"
    assert not staging.exists() or not any(staging.rglob("*"))
    state = (default_state_dir(store) / "state" / "ranker.json").read_text()
    assert '"2"' not in state.split('"refused"')[1].split("}")[0]  # not refused: retried later


def test_a_download_cut_by_a_full_disk_resumes_once_space_is_freed(
    tmp_path: Path, bucket: Path
) -> None:
    """The disk fills mid-download (an 8 MiB tmpfs; the declared sizes pass the space
    check, the pages they take do not): the files that arrived are kept; once the
    volume has room, the next run links them instead of fetching them again."""
    volume = tmp_path / "small"
    if not _try_tmpfs(volume, "8m"):
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        store = volume / "models"
        flags = sidecar_flags(store, bucket)
        # Twelve 400 KB files, then 1,500 files of 100 bytes that take a page each.
        files = {f"variables/big-{i:02d}": os.urandom(400_000) for i in range(12)}
        files |= {f"assets/tiny-{i:04d}": os.urandom(100) for i in range(1500)}
        src = write_tree(tmp_path / "v1", files)
        assert run_cli("publish", str(src), f"file://{bucket}", "--version", "1").returncode == 0
        env = {"MODELSYNC_LOG_FORMAT": "json"}
        first = run_cli("sync", *flags, env=env)
        assert first.returncode == 1 and "No space left on device" in first.stderr
        partial = default_state_dir(store) / "partial" / "ranker"
        kept = [p for p in partial.iterdir() if len(p.name) == 64]
        assert kept, "no complete file was kept"
        subprocess.run(["/usr/bin/mount", "-o", "remount,size=64m", str(volume)], check=True)
        second = run_cli("sync", *flags, env=env)
        assert second.returncode == 0, second.stderr
        done = [
            json.loads(line)
            for line in second.stderr.splitlines()
            if '"downloaded and verified"' in line
        ]
        assert done[0]["linked_files"] >= len(kept)
        assert done[0]["fetched_files"] == len(files) - done[0]["linked_files"]
        for name, data in files.items():
            assert (store / "ranker" / "1" / name).read_bytes() == data
        assert not any(partial.iterdir())
    finally:
        subprocess.run(["/usr/bin/umount", str(volume)], check=False)


def _fill_leaving(volume: Path, pages: int) -> None:
    """A file in ``volume`` that leaves exactly ``pages`` of the tmpfs free."""
    stat = os.statvfs(volume)
    free = stat.f_bavail * stat.f_frsize
    (volume / "filler").write_bytes(b"\0" * max(0, free - pages * stat.f_frsize))


def test_a_full_disk_at_every_write_after_the_space_check_loses_nothing(
    tmp_path: Path, bucket: Path
) -> None:
    """The volume fills at each write a pass makes once the free-space check passed
    (the download's pages, the staged manifest, the verification record, the state):
    swept page by page from the check's edge up to the first pass that fits. Each pass
    either serves the new revision whole or fails with one line, the active revision
    served as it was; once space is freed the next pass serves it. (A tmpfs keeps a
    short link's target in its inode: the swap of `current` takes no page here.)"""
    volume = tmp_path / "small"
    if not _try_tmpfs(volume, "8m"):
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        spare = tmp_path / "spare" / "ranker"  # where v2 waits between passes
        # Distinct ten-byte files: each takes a page, so v2's 110 take 110 pages.
        for version, count, where in ((1, 3, bucket), (2, 110, spare)):
            files = {f"f{i}": os.urandom(10) for i in range(count)}
            src = write_tree(tmp_path / f"v{version}", files)
            published = run_cli("publish", str(src), f"file://{where}", "--version", str(version))
            assert published.returncode == 0, published.stderr
        store = volume / "models"
        flags = sidecar_flags(store, bucket)
        failed_at: set[str] = set()
        served = False
        # 100 pages is below the check's edge (1,100 bytes plus a 5 % margin of 8 MiB).
        for pages in range(100, 160):
            for entry in volume.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            shutil.rmtree(bucket / "2", ignore_errors=True)
            assert run_cli("sync", *flags).returncode == 0
            before = snapshot(store / "ranker")
            shutil.copytree(spare / "2", bucket / "2")
            _fill_leaving(volume, pages)
            out = run_cli("sync", *flags, env={"MODELSYNC_LOG_FORMAT": "console"})
            assert check_invariants(store, "ranker").violations == [], (pages, out.stderr)
            if out.returncode == 0:
                assert (store / "ranker" / "current").readlink() == Path("2")
                served = True
                break
            assert out.returncode == 1, (pages, out.stderr)
            errors = [line for line in out.stderr.splitlines() if "sync failed" in line]
            assert len(errors) == 1, (pages, out.stderr)
            assert snapshot(store / "ranker") == before, pages
            if "No space left on device" in errors[0]:
                path = Path(errors[0].split("cannot write ")[1].split(": ")[0])
                failed_at.add(path.relative_to(default_state_dir(store)).parts[0])
            (volume / "filler").unlink()
            again = run_cli("sync", *flags)
            assert again.returncode == 0, (pages, again.stderr)
            assert (store / "ranker" / "current").readlink() == Path("2")
        assert served
        # The sweep reached past the download: the staged manifest, the verification
        # record and the state each met a full disk (where under the state directory).
        assert {"staging", "state", "verified"} <= failed_at, failed_at
    finally:
        subprocess.run(["/usr/bin/umount", str(volume)], check=False)
