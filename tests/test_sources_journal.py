"""The resume journal: what it keeps, and that nothing it says is trusted unchecked."""

from __future__ import annotations

import os
from pathlib import Path

from modelsync.sources.journal import RangeJournal, crc32c, range_matches


def _file(path: Path, data: bytes) -> int:
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def test_recorded_ranges_come_back_for_the_same_layout(tmp_path: Path) -> None:
    journal = RangeJournal(tmp_path / "x.ranges")
    assert journal.kept(1000, 256 * 1024) == {}
    journal.record(0, 500, 7)
    journal.record(500, 500, 9)
    journal.close()
    # The second record does not start on a range boundary: not a range of this layout.
    assert RangeJournal(tmp_path / "x.ranges").kept(1000, 256 * 1024) == {0: (500, 7)}
    journal = RangeJournal(tmp_path / "y.ranges")
    journal.kept(600_000, 262_144)
    journal.record(262_144, 262_144, 42)
    journal.record(524_288, 75_712, 43)
    journal.close()
    assert RangeJournal(tmp_path / "y.ranges").kept(600_000, 262_144) == {
        262_144: (262_144, 42),
        524_288: (75_712, 43),
    }


def test_another_layout_starts_over(tmp_path: Path) -> None:
    """A journal written for another object size or range size is emptied, not read."""
    journal = RangeJournal(tmp_path / "x.ranges")
    journal.kept(600_000, 262_144)
    journal.record(0, 262_144, 1)
    journal.close()
    again = RangeJournal(tmp_path / "x.ranges")
    assert again.kept(600_000, 524_288) == {}
    again.close()
    assert (tmp_path / "x.ranges").read_text().splitlines() == ["modelsync-ranges 1 600000 524288"]


def test_torn_and_hostile_lines_are_skipped(tmp_path: Path) -> None:
    """A crash mid-append leaves a torn last line; garbage and out-of-range records are
    ignored rather than trusted."""
    path = tmp_path / "x.ranges"
    path.write_text(
        "modelsync-ranges 1 600000 262144\n"
        "0 262144 5\n"
        "262144 262144\n"  # torn
        "nonsense line here\n"
        "-1 262144 5\n"
        "524288 900000 5\n"  # past the end
        "1 262144 5\n"  # not on a range boundary
        "524288 75712 6"  # torn after its last digit: a complete record
    )
    assert RangeJournal(path).kept(600_000, 262_144) == {0: (262_144, 5), 524_288: (75_712, 6)}


def test_range_matches_reads_the_bytes_back(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    fd = _file(tmp_path / "part", data)
    try:
        assert range_matches(fd, 1000, 5000, crc32c(data[1000:6000]))
        assert not range_matches(fd, 1000, 5000, crc32c(data[1000:6000]) ^ 1)
        assert not range_matches(fd, 299_000, 5000, crc32c(data[299_000:]))  # short file
    finally:
        os.close(fd)
    assert crc32c(data[:10], crc32c(b"")) == crc32c(data[:10])
    assert crc32c(data[10:], crc32c(data[:10])) == crc32c(data)
