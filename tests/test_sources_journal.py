"""The resume journal: what it keeps, and that nothing it says is trusted unchecked."""

from __future__ import annotations

import os
from pathlib import Path

from modelsync.sources.crc32c import extend as crc32c
from modelsync.sources.journal import RangeJournal, range_matches


def test_recorded_blocks_come_back_for_the_same_object_size(tmp_path: Path) -> None:
    journal = RangeJournal(tmp_path / "x.ranges")
    assert journal.kept(600_000) == {}
    journal.record(262_144, 262_144, 42)
    journal.record(524_288, 75_712, 43)
    journal.close()
    assert RangeJournal(tmp_path / "x.ranges").kept(600_000) == {
        262_144: (262_144, 42),
        524_288: (75_712, 43),
    }


def test_another_object_size_starts_over(tmp_path: Path) -> None:
    """A journal written for an object of another size is emptied, not read."""
    journal = RangeJournal(tmp_path / "x.ranges")
    journal.kept(600_000)
    journal.record(0, 262_144, 1)
    journal.close()
    again = RangeJournal(tmp_path / "x.ranges")
    assert again.kept(700_000) == {}
    again.close()
    assert (tmp_path / "x.ranges").read_text().splitlines() == ["modelsync-ranges 2 700000"]


def test_torn_and_hostile_lines_are_skipped(tmp_path: Path) -> None:
    """A crash mid-append leaves a torn last line; garbage and out-of-range records are
    ignored rather than trusted."""
    path = tmp_path / "x.ranges"
    path.write_text(
        "modelsync-ranges 2 600000\n"
        "0 262144 5\n"
        "262144 262144\n"  # torn
        "nonsense line here\n"
        "-1 262144 5\n"
        "524288 900000 5\n"  # past the end
        "1000 0 5\n"  # empty
        "524288 75712 6"  # torn after its last digit: a complete record
    )
    assert RangeJournal(path).kept(600_000) == {0: (262_144, 5), 524_288: (75_712, 6)}


def test_range_matches_reads_the_bytes_back(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "part").write_bytes(data)
    fd = os.open(tmp_path / "part", os.O_RDONLY)
    try:
        assert range_matches(fd, 1000, 5000, crc32c(data[1000:6000]))
        assert not range_matches(fd, 1000, 5000, crc32c(data[1000:6000]) ^ 1)
        assert not range_matches(fd, 299_000, 5000, crc32c(data[299_000:]))  # short file
    finally:
        os.close(fd)
