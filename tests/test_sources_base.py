"""The Sink on a bare descriptor: bytes on disk and their digest, a retry's reset, a
kept partial file cut by a streamed write, the size bound, and a write the kernel
takes only in part (a file-size limit) ending in one line naming the file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelsync.sources.base import OversizeError, Sink
from modelsync.sources.journal import RangeJournal


def test_bytes_land_hashed_and_fsynced_and_a_reset_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    sink = Sink(path, None, "object w.bin")
    sink.write(b"wrong")
    sink.reset()
    sink.write(b"right")
    sink.write(b"-data")
    assert sink.finish() == hashlib.sha256(b"right-data").hexdigest()
    assert path.read_bytes() == b"right-data"
    with pytest.raises(ValueError, match="closed sink"):
        sink.write(b"x")
    sink.close()  # closing again is harmless


def test_more_than_declared_is_refused_before_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    with Sink(path, 4, "object w.bin") as sink:
        sink.write(b"abcd")
        with pytest.raises(OversizeError, match="more than the declared 4 bytes"):
            sink.write(b"e")
    assert path.read_bytes() == b"abcd"


def test_a_kept_partial_file_is_cut_by_a_streamed_write(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"old bytes of an interrupted download")
    journal = RangeJournal(tmp_path / "w.journal")
    sink = Sink(path, None, "object w.bin", journal=journal)
    sink.write(b"new")
    sink.finish()
    assert path.read_bytes() == b"new"


def test_adopted_bytes_keep_their_digest_and_the_position_is_the_end(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"ranged")
    sink = Sink(path, 6, "object w.bin", journal=RangeJournal(tmp_path / "w.journal"))
    sink.adopt("ab" * 32, 6)
    assert sink.finish() == "ab" * 32
    assert path.read_bytes() == b"ranged"


_CHILD = """
import resource, signal, sys
from pathlib import Path
from modelsync.errors import StoreError
from modelsync.sources.base import Sink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
sink = Sink(Path(sys.argv[1]), None, "object big")
try:
    sink.write(b"x" * 262_144)
except StoreError as exc:
    print(exc)
"""


def test_a_write_taken_in_part_goes_on_and_its_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    # The kernel took 150,000 bytes, then refused the rest (EFBIG): one line, the path.
    assert path.stat().st_size == 150_000
    assert done.stdout.strip() == f"cannot write {path}: File too large"


def test_a_fifo_planted_where_a_file_is_written_fails_at_once(tmp_path: Path) -> None:
    """A FIFO where a fetched file goes (staging, or a kept download) cannot hold the
    open or the write: one line naming the file, within a second."""
    import time

    from modelsync.errors import StoreError

    fifo = tmp_path / "weights.part"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"weights\.part"):
        sink = Sink(fifo, 10, "gs://b/m/1/weights")
        sink.write(b"0123456789")
        sink.finish()
    assert time.monotonic() - started < 1.0
