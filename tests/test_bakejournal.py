"""The bake journal is read with the one version grammar: a key or a version that is
not a canonical version makes the journal unreadable (started afresh), never a
different version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelsync.bakejournal import Journal
from modelsync.verdicts import BakeVerdict


class _Log:
    """Records what the journal warns about (the real logger's call shape)."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


def _saved(path: Path) -> None:
    journal = Journal(path)
    journal.verdicts = {9: BakeVerdict(verdict="passed")}
    journal.save()


def test_a_canonical_journal_loads_back(tmp_path: Path) -> None:
    """What save() writes loads back with its verdicts, without a warning."""
    path, log = tmp_path / "ranker.json", _Log()
    _saved(path)
    assert list(Journal.load(path, log).verdicts) == [9]
    assert log.warnings == []


@pytest.mark.parametrize("key", ["09", " 9", "9 ", "+9", "9_0", "\u0669", "9\n"])
def test_a_verdict_key_int_would_read_is_refused(tmp_path: Path, key: str) -> None:
    """Verdict keys int() takes as 9 but the version grammar refuses: the journal is
    unreadable and started afresh (no verdict is filed under version 9)."""
    path, log = tmp_path / "ranker.json", _Log()
    _saved(path)
    doc = json.loads(path.read_text())
    doc["verdicts"] = {key: doc["verdicts"]["9"]}
    path.write_text(json.dumps(doc))
    assert Journal.load(path, log).verdicts == {}
    assert [event for event, _ in log.warnings] == ["bake journal unreadable; starting afresh"]
