from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from modelsync.errors import StoreError
from modelsync.fsutil import (
    atomic_write_bytes,
    move_dir,
    open_regular_rw,
    read_regular,
    remove_tree,
    swap_symlink,
)
from tests.helpers import bind_unix_socket


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    """The target holds exactly the new bytes and no temp file is left."""
    target = tmp_path / "f"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new bytes")
    assert target.read_bytes() == b"new bytes"
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_atomic_write_failure_is_a_store_error(tmp_path: Path) -> None:
    """Writing into a missing directory names the path and leaves nothing behind."""
    with pytest.raises(StoreError, match="cannot write"):
        atomic_write_bytes(tmp_path / "missing" / "f", b"x")


def test_swap_symlink_is_relative_and_leaves_no_temp(tmp_path: Path) -> None:
    """The link stores a relative target; its temp name lived in the tmp dir."""
    model = tmp_path / "model"
    (model / "1").mkdir(parents=True)
    (model / "2").mkdir()
    swap_symlink(model / "current", "1", tmp_path / "tmp")
    swap_symlink(model / "current", "2", tmp_path / "tmp")
    assert os.readlink(model / "current") == "2"
    assert sorted(os.listdir(model)) == ["1", "2", "current"]
    assert os.listdir(tmp_path / "tmp") == []


def test_move_and_remove_tree(tmp_path: Path) -> None:
    """Trees move by rename and are removed via the trash directory."""
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "a" / "x" / "f").write_bytes(b"1")
    move_dir(tmp_path / "a", tmp_path / "b" / "a")
    assert (tmp_path / "b" / "a" / "x" / "f").read_bytes() == b"1"
    remove_tree(tmp_path / "b" / "a", tmp_path / "trash")
    assert not (tmp_path / "b" / "a").exists()
    assert os.listdir(tmp_path / "trash") == []
    remove_tree(tmp_path / "nothing", tmp_path / "trash")


def test_read_regular_reads_a_file_within_its_limit(tmp_path: Path) -> None:
    """A regular file at most ``limit`` bytes long comes back whole."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_regular(path, 10) == b"x" * 10


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: os.symlink("/dev/zero", p), "symbolic link"),
        (lambda p: os.mkfifo(p), "a FIFO"),
        (lambda p: p.mkdir(), "a directory"),
        (lambda p: p.write_bytes(b"x" * 11), "more than the 10"),
    ],
    ids=["link-to-dev-zero", "fifo", "directory", "too-large"],
)
def test_read_regular_refuses_what_could_block_or_flood(
    tmp_path: Path, make: object, message: str
) -> None:
    """A link, FIFO, directory or oversized file is a one-line error, never a blocked read."""
    path = tmp_path / "f"
    make(path)  # type: ignore[operator]
    with pytest.raises(StoreError, match=message):
        read_regular(path, 10)


def test_read_regular_missing_is_file_not_found(tmp_path: Path) -> None:
    """A missing file is FileNotFoundError, for the caller to treat as absent."""
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "missing", 10)


def test_open_regular_rw_creates_the_file_and_its_directory(tmp_path: Path) -> None:
    """A missing lock file is created (mode 0644, its directory too), opened for
    reading and writing; an existing one is opened as it is, its bytes kept."""
    path = tmp_path / "locks" / "m.lock"
    fd = open_regular_rw(path)
    try:
        os.write(fd, b"123\n")
    finally:
        os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~_umask()
    fd = open_regular_rw(path)
    try:
        assert os.pread(fd, 16, 0) == b"123\n"
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: os.mkfifo(p), "not a regular file (a FIFO); not opened"),
        (lambda p: p.mkdir(), "not a regular file (a directory); not opened"),
        (bind_unix_socket, "not a regular file (a socket); not opened"),
        (lambda p: os.symlink(p.parent / "elsewhere", p), "is a symbolic link; not followed"),
        (lambda p: os.symlink("/dev/null", p), "is a symbolic link; not followed"),
    ],
    ids=["fifo", "directory", "socket", "link-to-a-new-file", "link-to-a-device"],
)
def test_open_regular_rw_refuses_anything_but_a_regular_file(
    tmp_path: Path, make: object, message: str
) -> None:
    """What someone planted under a lock file's name is one line naming the path and
    what it is: a FIFO does not block the open (no reader ever comes here), and a
    link creates nothing where it points."""
    path = tmp_path / "m.lock"
    make(path)  # type: ignore[operator]
    started = time.monotonic()
    with pytest.raises(StoreError) as raised:
        open_regular_rw(path)
    assert time.monotonic() - started < 2
    assert str(raised.value) == f"{path}: {message}"
    assert not (tmp_path / "elsewhere").exists()


def test_open_regular_rw_does_not_follow_a_linked_directory(tmp_path: Path) -> None:
    """The directory that holds the file (modelsync's own ``locks/``) replaced by a link
    to another directory: refused in one line, and no file is created over there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "locks").symlink_to(elsewhere)
    with pytest.raises(StoreError) as raised:
        open_regular_rw(tmp_path / "locks" / "m.lock")
    assert str(raised.value) == f"{tmp_path / 'locks'}: is a symbolic link; not followed"
    assert list(elsewhere.iterdir()) == []


def test_open_regular_rw_os_errors_are_one_line(tmp_path: Path) -> None:
    """A file where the lock directory goes (ENOTDIR/EEXIST) is a StoreError naming it,
    not an OSError with a traceback."""
    (tmp_path / "locks").write_bytes(b"")
    with pytest.raises(StoreError, match=rf"cannot create {tmp_path / 'locks'}: "):
        open_regular_rw(tmp_path / "locks" / "m.lock")


def test_read_regular_follow_links_reads_through_the_operators_links(tmp_path: Path) -> None:
    """follow_links: a chain of links to a regular file (a ConfigMap's ..data) is read;
    without it the same path is refused, so other callers keep their rule."""
    (tmp_path / "..2026_1").mkdir()
    (tmp_path / "..2026_1" / "f").write_bytes(b"data")
    (tmp_path / "..data").symlink_to("..2026_1")
    (tmp_path / "f").symlink_to("..data/f")
    assert read_regular(tmp_path / "f", 10, follow_links=True) == b"data"
    with pytest.raises(StoreError, match="symbolic link; not followed"):
        read_regular(tmp_path / "f", 10)


def _link_to_fifo(path: Path) -> None:
    os.mkfifo(path.with_name("fifo"))
    path.symlink_to("fifo")


def _link_to_large(path: Path) -> None:
    path.with_name("big").write_bytes(b"x" * 11)
    path.symlink_to("big")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: os.symlink("/dev/zero", p), "a character device"),
        (_link_to_fifo, "a FIFO"),
        (lambda p: os.symlink(p.name, p), "a loop of symbolic links"),
        (_link_to_large, "more than"),
    ],
    ids=["to-dev-zero", "to-fifo", "loop", "to-too-large"],
)
def test_read_regular_follow_links_judges_what_is_at_the_end(
    tmp_path: Path, make: object, message: str
) -> None:
    """Following links never lets a FIFO, a device, an oversized file or a loop through:
    a one-line StoreError, never a blocked or endless read."""
    path = tmp_path / "f"
    make(path)  # type: ignore[operator]
    with pytest.raises(StoreError, match=message):
        read_regular(path, 10, follow_links=True)
