from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelsync.errors import StoreError
from modelsync.fsutil import atomic_write_bytes, move_dir, read_regular, remove_tree, swap_symlink


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
