from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelsync.logs import configure_logging


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[io.StringIO]:
    """Each test starts with logging reset to an in-memory JSON stream."""
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    yield stream


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    """A local bucket directory holding one model, 'ranker'."""
    path = tmp_path / "bucket" / "ranker"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"
