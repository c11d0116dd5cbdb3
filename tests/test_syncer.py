from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.manifest import MANIFEST_NAME
from modelsync.sync import Outcome, PassResult, Syncer
from modelsync.volume import Store
from tests.helpers import (
    check_invariants,
    manifest_doc,
    model_files,
    put_revision,
    snapshot,
)


def _sync(store: Path, bucket: Path, **model: object) -> PassResult:
    syncer = Syncer(Store(store, store / ".modelsync"))
    try:
        config = ModelConfig(name="ranker", source=f"file://{bucket}", **model)  # type: ignore[arg-type]
        return syncer.sync(config, CancelToken())
    finally:
        syncer.close()


def test_newest_complete_version_wins(store: Path, bucket: Path) -> None:
    """The newest version with a manifest is activated; a newer one without is ignored."""
    put_revision(bucket, 1, model_files(1))
    put_revision(bucket, 2, model_files(2))
    put_revision(bucket, 3, model_files(3), manifest=False)
    result = _sync(store, bucket)
    assert (result.outcome, result.active) == (Outcome.ACTIVATED, 2)
    assert (store / "ranker" / "current" / "saved_model.pb").read_bytes() == b"graph-2"
    assert check_invariants(store, "ranker").violations == []


def test_second_pass_changes_nothing(store: Path, bucket: Path) -> None:
    """A pass with nothing new is UNCHANGED and leaves the store byte-identical."""
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    before = snapshot(store / "ranker")
    result = _sync(store, bucket)
    assert result.outcome is Outcome.UNCHANGED and result.ok
    assert snapshot(store / "ranker") == before


def test_history_retains_keep_revisions(store: Path, bucket: Path) -> None:
    """Three revisions in turn: the active one plus keep-1 cached remain."""
    for version in (1, 2, 3):
        put_revision(bucket, version, model_files(version))
        assert _sync(store, bucket).active == version
    ms = Store(store, store / ".modelsync").model("ranker")
    assert ms.served_versions() == [3]
    assert ms.cached_versions() == [2]


def test_unchanged_files_are_linked_not_copied(store: Path, bucket: Path) -> None:
    """A revision sharing a file with the active one fetches only the changed files."""
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    put_revision(bucket, 2, model_files(2))
    result = _sync(store, bucket)
    assert (result.stats.files_fetched, result.stats.files_linked) == (2, 1)
    ms = Store(store, store / ".modelsync").model("ranker")
    old = ms.cache_dir / "1" / "variables" / "variables.index"
    new = store / "ranker" / "2" / "variables" / "variables.index"
    assert old.stat().st_ino == new.stat().st_ino


def test_bad_manifest_is_refused_and_older_version_used(store: Path, bucket: Path) -> None:
    """An invalid manifest refuses that version for good; the next older one is used."""
    put_revision(bucket, 1, model_files(1))
    put_revision(bucket, 2, model_files(2))
    (bucket / "2" / MANIFEST_NAME).write_text('{"format": 1, "files": "nope"}')
    result = _sync(store, bucket)
    assert result.active == 1
    assert result.refused == [2]
    assert not result.ok
    again = _sync(store, bucket)
    assert again.outcome is Outcome.UNCHANGED and again.ok


def test_corrupt_file_refuses_revision_and_keeps_store(store: Path, bucket: Path) -> None:
    """A file that differs from its manifest leaves the store exactly as it was."""
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    before = snapshot(store / "ranker")
    put_revision(bucket, 2, model_files(2))
    (bucket / "2" / "saved_model.pb").write_bytes(b"graph-X")
    result = _sync(store, bucket)
    # Refusing it is the pass doing its work: not a failed pass, but not ok either.
    assert result.outcome is Outcome.UNCHANGED and not result.ok
    assert "sha256" in (result.error or "")
    assert snapshot(store / "ranker") == before
    assert result.refused == [2]
    assert not any((store / ".modelsync" / "staging").rglob("*"))


def test_version_mismatch_and_max_bytes_refuse_before_download(store: Path, bucket: Path) -> None:
    """A manifest naming another version, or a revision over max_bytes, is refused."""
    put_revision(bucket, 1, model_files(1))
    doc = manifest_doc(model_files(2), version=9)
    put_revision(bucket, 2, model_files(2), manifest=False)
    (bucket / "2" / MANIFEST_NAME).write_text(json.dumps(doc))
    put_revision(bucket, 3, model_files(3, size=100_000))
    result = _sync(store, bucket, max_bytes=50_000)
    assert sorted(result.refused) == [2, 3]
    assert result.active == 1


def test_not_enough_disk_space_fails_cleanly(store: Path, bucket: Path) -> None:
    """A revision larger than the free space fails before downloading anything, and is
    not refused (space can be freed)."""
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    before = snapshot(store / "ranker")
    doc = manifest_doc(model_files(2), version=2)
    usage = shutil.disk_usage(store)  # more than is free, less than the volume
    doc["files"][0]["size"] = usage.free + (usage.total - usage.free) // 2  # type: ignore[index]
    put_revision(bucket, 2, model_files(2), manifest=False)
    (bucket / "2" / MANIFEST_NAME).write_text(json.dumps(doc))
    result = _sync(store, bucket)
    assert result.outcome is Outcome.FAILED
    assert "free" in (result.error or "")
    assert snapshot(store / "ranker") == before
    assert 2 not in Store(store, store / ".modelsync").model("ranker").load_state().refused


def test_a_revision_larger_than_the_volume_is_refused(store: Path, bucket: Path) -> None:
    """A revision that could never fit is refused, so it cannot block the next one."""
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    doc = manifest_doc(model_files(2), version=2)
    doc["files"][0]["size"] = 2**50  # type: ignore[index]
    put_revision(bucket, 2, model_files(2), manifest=False)
    (bucket / "2" / MANIFEST_NAME).write_text(json.dumps(doc))
    result = _sync(store, bucket)
    assert result.refused == [2] and "whole volume" in (result.error or "")
    put_revision(bucket, 3, model_files(3))
    assert _sync(store, bucket).outcome is Outcome.ACTIVATED


def test_missing_source_fails_with_a_clear_error(store: Path, tmp_path: Path) -> None:
    """A source directory that does not exist fails the pass, naming it."""
    result = _sync(store, tmp_path / "nowhere")
    assert result.outcome is Outcome.FAILED
    assert "does not exist" in (result.error or "")


def test_pinned_model_is_left_alone(store: Path, bucket: Path) -> None:
    """A pinned model does not move to newer revisions."""
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    ms = Store(store, store / ".modelsync").model("ranker")
    state = ms.load_state()
    state.pinned = 1
    ms.save_state(state)
    put_revision(bucket, 2, model_files(2))
    result = _sync(store, bucket)
    assert (result.outcome, result.active) == (Outcome.UNCHANGED, 1)


@pytest.mark.parametrize("moved", [True, False])
def test_interrupted_activation_is_finished(store: Path, bucket: Path, moved: bool) -> None:
    """A journal left by a crash is finished (tree in place) or dropped (it never moved)."""
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    put_revision(bucket, 2, model_files(2))
    st = Store(store, store / ".modelsync")
    ms = st.model("ranker")
    state = ms.load_state()
    from modelsync.state import Pending

    state.pending = Pending(2, 1)
    ms.save_state(state)
    if moved:
        import shutil

        shutil.copytree(bucket / "2", ms.dir / "2")
    result = _sync(store, bucket)
    assert result.active == 2
    assert ms.served_versions() == [2]
    assert ms.load_state().pending is None
    assert check_invariants(store, "ranker").violations == []
