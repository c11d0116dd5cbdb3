"""sources/ranges.py: a range written in place, bounded to what was asked for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.errors import RefusedError, TransientSourceError
from modelsync.sources.ranges import RangeWriter


def test_more_bytes_than_the_range_is_a_transfer_fault_not_a_refusal(tmp_path: Path) -> None:
    """A store that sends more than the range asked for (a 206 that runs on) gets a
    retryable error, never a RefusedError (which would refuse the revision for good),
    and nothing past the range reaches the file; a retry starts at the last block."""
    path = tmp_path / "part"
    path.write_bytes(b"\0" * 64)
    fd = os.open(path, os.O_RDWR)
    try:
        writer = RangeWriter(fd, 16, 16, CancelToken(), "gs://b/o", block=8)
        writer.write(b"a" * 8)
        with pytest.raises(TransientSourceError) as caught:
            writer.write(b"b" * 12)
        assert not isinstance(caught.value, RefusedError) and caught.value.retryable
        assert "more than the requested range" in str(caught.value)
        assert writer.resume == 24
        writer.reset()
        writer.write(b"c" * 8)
        assert writer.complete
    finally:
        os.close(fd)
    assert path.read_bytes() == b"\0" * 16 + b"a" * 8 + b"c" * 8 + b"\0" * 32
