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
    run_cli,
    sidecar_flags,
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


def _newest_missing_an_object(bucket: Path) -> None:
    """Revisions 1 and 2 good; 3's manifest lists a file the bucket does not hold (an
    upload cut short, or in progress behind a manifest written too early)."""
    put_revision(bucket, 1, model_files(1))
    put_revision(bucket, 2, model_files(2))
    put_revision(bucket, 3, model_files(3))
    (bucket / "3" / "saved_model.pb").unlink()


def test_a_newest_revision_missing_an_object_leaves_the_one_below_served(
    store: Path, bucket: Path
) -> None:
    """A fresh host: revision 3 cannot be fetched (an object it lists does not exist),
    which is not a refusal. Revision 2 is served in the same pass and the result says
    3 was passed over (not ok); 3 is not refused, so it is brought in once it is whole."""
    _newest_missing_an_object(bucket)
    result = _sync(store, bucket)
    assert (result.outcome, result.active) == (Outcome.ACTIVATED, 2), result.error
    assert list(result.deferred) == [3] and "does not exist" in result.deferred[3]
    assert result.refused == [] and not result.ok and not result.succeeded
    assert result.retry_soon
    ms = Store(store, store / ".modelsync").model("ranker")
    state = ms.load_state()
    assert state.refused == {}
    assert state.last_error is not None and "version 3 could not be fetched" in state.last_error
    assert check_invariants(store, "ranker").violations == []
    # Still broken, and nothing newer than the active one to stand in: the pass fails
    # with the store as it was.
    before = snapshot(store / "ranker")
    again = _sync(store, bucket)
    assert (again.outcome, again.active) == (Outcome.FAILED, 2)
    assert "does not exist" in (again.error or "") and again.refused == []
    assert snapshot(store / "ranker") == before
    # The upload completes: the next pass brings 3 in.
    (bucket / "3" / "saved_model.pb").write_bytes(model_files(3)["saved_model.pb"])
    last = _sync(store, bucket)
    assert (last.outcome, last.active) == (Outcome.ACTIVATED, 3) and last.ok


def test_every_newer_revision_broken_below_the_active_one_fails_the_pass(
    store: Path, bucket: Path
) -> None:
    """Active 1; 2 and 3 each miss an object: both are passed over (walked down in one
    pass), neither refused, and the pass fails with the store unchanged."""
    put_revision(bucket, 1, model_files(1))
    assert _sync(store, bucket).active == 1
    for version in (2, 3):
        put_revision(bucket, version, model_files(version))
        (bucket / str(version) / "saved_model.pb").unlink()
    before = snapshot(store / "ranker")
    result = _sync(store, bucket)
    assert (result.outcome, result.active) == (Outcome.FAILED, 1)
    assert sorted(result.deferred) == [2, 3] and result.refused == []
    assert snapshot(store / "ranker") == before


def test_sync_exits_1_when_an_older_revision_stands_in_for_the_newest(
    store: Path, bucket: Path
) -> None:
    """`sync` (and `sync --require`) serve revision 2 when 3 cannot be fetched, and exit 1
    with a warning naming 3 and the error: the model is not on its newest revision."""
    _newest_missing_an_object(bucket)
    out = run_cli("--log-format", "console", "sync", "--require", *sidecar_flags(store, bucket))
    assert out.returncode == 1, out.stderr
    assert "a newer revision could not be fetched" in out.stderr + out.stdout
    assert "saved_model.pb" in out.stderr + out.stdout
    # And one plain line that says why the command exits 1 although a revision is served.
    plain = [line for line in out.stderr.splitlines() if line.startswith("modelsync: model")]
    assert plain == [
        f"modelsync: model ranker: version 3 could not be fetched ({bucket.as_uri()}"
        "/3/saved_model.pb: object does not exist); serving 2 meanwhile"
    ], out.stderr
    assert (store / "ranker" / "current").resolve().name == "2"
