"""The operator's rollback (modelsync.sync.manual) against a real store and a file://
bucket: it goes to the newest older retained revision and pins there, a retained copy
that no longer equals its manifest is moved aside and refused with the served revision
untouched, and what it cannot do is one line that changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig, default_state_dir
from modelsync.errors import StoreError
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.helpers import check_invariants, model_files, put_revision


def _two_revisions(tmp_path: Path, bucket: Path) -> tuple[Syncer, ModelConfig, Path]:
    store = tmp_path / "store"
    syncer = Syncer(Store(store, default_state_dir(store)))
    model = ModelConfig(name="ranker", source=f"file://{bucket}")
    for version in (1, 2):
        put_revision(bucket, version, model_files(version))
        assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    return syncer, model, store


def test_rollback_goes_to_the_older_revision_and_pins_it(tmp_path: Path, bucket: Path) -> None:
    """Back to 1 with its bytes, pinned: a later publish is not taken until unpin."""
    syncer, model, store = _two_revisions(tmp_path, bucket)
    result = syncer.rollback_to(model, None, CancelToken())
    assert (result.outcome, result.active) == (Outcome.ACTIVATED, 1)
    assert os.readlink(store / "ranker" / "current") == "1"
    for rel, data in model_files(1).items():
        assert (store / "ranker" / "1" / rel).read_bytes() == data
    put_revision(bucket, 3, model_files(3))
    assert syncer.sync(model, CancelToken()).active == 1
    assert os.readlink(store / "ranker" / "current") == "1"
    assert syncer.unpin(model) == 1
    assert syncer.sync(model, CancelToken()).active == 3
    assert check_invariants(store, "ranker").violations == []


def test_a_tampered_retained_copy_is_moved_aside_and_nothing_changes(
    tmp_path: Path, bucket: Path
) -> None:
    """A retained copy with one byte changed: refused in one line naming where the copy
    went; 2 stays served and nothing is pinned."""
    syncer, model, store = _two_revisions(tmp_path, bucket)
    ms = syncer.store.model("ranker", model.layout)
    retained = ms.path_of(1)
    assert retained is not None
    victim = next(
        p for p in retained.rglob("*") if p.is_file() and p.name != "modelsync-manifest.json"
    )
    victim.write_bytes(b"X" + victim.read_bytes()[1:])
    with pytest.raises(StoreError, match=r"version 1 .*nothing changed \(the copy was moved to "):
        syncer.rollback_to(model, 1, CancelToken())
    assert os.readlink(store / "ranker" / "current") == "2"
    assert ms.path_of(1) is None and ms.load_state().pinned is None
    assert any(ms.foreign_dir.iterdir())


@pytest.mark.parametrize(
    ("version", "says"),
    [(None, "no retained revision older than 1"), (5, "version 5 is not a retained revision")],
)
def test_what_cannot_be_done_is_one_line(
    tmp_path: Path, bucket: Path, version: int | None, says: str
) -> None:
    """Nothing older than the only revision, or a version not on disk: one line, and
    the store as it was."""
    store = tmp_path / "store"
    syncer = Syncer(Store(store, default_state_dir(store)))
    model = ModelConfig(name="ranker", source=f"file://{bucket}")
    put_revision(bucket, 1, model_files(1))
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    with pytest.raises(StoreError, match=says) as caught:
        syncer.rollback_to(model, version, CancelToken())
    assert "\n" not in str(caught.value)
    assert os.readlink(store / "ranker" / "current") == "1"
    assert syncer.store.model("ranker", model.layout).load_state().pinned is None
