from __future__ import annotations

from pathlib import Path

import pytest

from modelsync.errors import StoreError
from modelsync.state import ModelState, Pending


def test_state_round_trip(tmp_path: Path) -> None:
    """Refused versions, pin and journal survive a save and load."""
    path = tmp_path / "s" / "m.json"
    state = ModelState(refused={7: "bad"}, pinned=3, pending=Pending(8, 7, "rolling_back"))
    state.save(path)
    loaded = ModelState.load(path)
    assert loaded == state
    assert ModelState.load(tmp_path / "none.json") == ModelState()


def test_damaged_state_file_is_a_clear_error(tmp_path: Path) -> None:
    """A corrupt state file says which file and what to do."""
    path = tmp_path / "m.json"
    path.write_text("{not json")
    with pytest.raises(StoreError, match="move it aside"):
        ModelState.load(path)
    path.write_text('{"pending": {"nope": 1}}')
    with pytest.raises(StoreError, match="malformed"):
        ModelState.load(path)
