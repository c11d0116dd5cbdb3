"""What only file:// has: control writes lock a `.lock` in the bucket, which anyone who
can write the bucket can plant or hold (the shared contract is
tests/test_sources_contract.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelsync.backends.file import LocalSource
from modelsync.errors import SourceError


def test_a_fifo_planted_as_the_bucket_lock_fails_the_write_at_once(tmp_path: Path) -> None:
    """A FIFO at `_channels/.lock`: the write of a channel pointer fails in one line
    naming the object, within a second (the open used to wait for a reader forever),
    and the pointer is not written."""
    bucket = tmp_path / "bucket" / "ranker"
    (bucket / "_channels").mkdir(parents=True)
    os.mkfifo(bucket / "_channels" / ".lock")
    source = LocalSource(f"file://{bucket}")
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        source.put_control("_channels/prod.json", b'{"stable": 1}', match="")
    assert time.monotonic() - started < 1.0
    assert str(caught.value) == (
        f"file://{bucket}/_channels/prod.json: the bucket's .lock is not a regular file; not used"
    )
    assert not (bucket / "_channels" / "prod.json").exists()


def test_a_held_bucket_lock_is_waited_for_a_bounded_time(tmp_path: Path) -> None:
    """Another process holds the bucket's `.lock` (flock) and never lets go: the write
    gives up after about 5 s in one line; once the holder is gone it succeeds."""
    bucket = tmp_path / "bucket" / "ranker"
    (bucket / "_channels").mkdir(parents=True)
    lock = bucket / "_channels" / ".lock"
    lock.touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'r+'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        source = LocalSource(f"file://{bucket}")
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"\.lock is held by another writer for 5 s"):
            source.put_control("_channels/prod.json", b'{"stable": 1}')
        assert 4.5 < time.monotonic() - started < 8
    finally:
        holder.kill()
        holder.communicate()
    tag = LocalSource(f"file://{bucket}").put_control("_channels/prod.json", b'{"stable": 1}')
    assert tag and (bucket / "_channels" / "prod.json").read_bytes() == b'{"stable": 1}'
