"""What a server finds in the store: no state, a current link only where it is wanted,
model-level files that travel with a revision, one version at a time where needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig, default_state_dir
from modelsync.store import Layout
from modelsync.sync import Outcome, Syncer
from modelsync.volume import LEGACY_STATE, Store
from tests.helpers import (
    admitted,
    manifest_doc,
    model_files,
    put_revision,
    run_cli,
    sidecar_flags,
    write_tree,
)

TRITON = Layout(link_current=False, model_files=("config.pbtxt",))


def _staged(store: Store, version: int, files: dict[str, bytes]) -> Path:
    path = store.model("m").new_staging(version)
    write_tree(path, files)
    doc = manifest_doc(files, "m", version)
    (path / "modelsync-manifest.json").write_text(json.dumps(doc))
    return path


def test_model_level_files_are_placed_and_restored_on_rollback(tmp_path: Path) -> None:
    """config.pbtxt of the active revision is at <store>/<model>/; a rollback puts the
    previous one back, and a revision without one leaves the placed one alone."""
    store = Store(tmp_path / "models", tmp_path / ".state")
    store.prepare()
    ms = store.model("m", TRITON)
    state = ms.load_state()
    v1 = {**model_files(1), "config.pbtxt": b'backend: "python"  # v1'}
    ms.activate(admitted(ms, 1, _staged(store, 1, v1)), None, state)
    ms.commit(state, keep=2, now=1.0)
    placed = ms.dir / "config.pbtxt"
    assert placed.read_bytes() == v1["config.pbtxt"]
    v2 = {**model_files(2), "config.pbtxt": b'backend: "python"  # v2'}
    ms.activate(admitted(ms, 2, _staged(store, 2, v2)), 1, state)
    assert placed.read_bytes() == v2["config.pbtxt"]
    ms.rollback(state)
    assert placed.read_bytes() == v1["config.pbtxt"]
    assert sorted(os.listdir(ms.dir)) == ["1", "config.pbtxt"]  # no current in the tree
    state.pending = None
    ms.activate(admitted(ms, 3, _staged(store, 3, model_files(3))), 1, state)
    assert placed.read_bytes() == v1["config.pbtxt"]
    assert not list((tmp_path / "models").rglob("*.tmp*"))


def test_exclusive_layout_serves_one_version_even_while_confirming(tmp_path: Path) -> None:
    """MLServer/KServe: the previous version leaves the model directory at activation
    and comes back on rollback."""
    store = Store(tmp_path / "models", tmp_path / ".state")
    store.prepare()
    ms = store.model("m", Layout(link_current=False, exclusive=True))
    state = ms.load_state()
    ms.activate(admitted(ms, 1, _staged(store, 1, model_files(1))), None, state)
    ms.commit(state, keep=2, now=1.0)
    ms.activate(admitted(ms, 2, _staged(store, 2, model_files(2))), 1, state)
    assert ms.served_versions() == [2] and ms.cached_versions() == [1]
    ms.rollback(state)
    assert ms.served_versions() == [1] and ms.active_version() == 1


def test_the_pointer_moves_when_the_preset_changes(tmp_path: Path) -> None:
    """A model switched from custom to a scanning server loses <model>/current (the
    pointer moves to the state directory) and keeps its active version; and back."""
    store = Store(tmp_path / "models", tmp_path / ".state")
    store.prepare()
    ms = store.model("m")
    state = ms.load_state()
    ms.activate(admitted(ms, 1, _staged(store, 1, model_files(1))), None, state)
    ms.commit(state, keep=2, now=1.0)
    assert (ms.dir / "current").is_symlink()
    scanned = store.model("m", Layout(link_current=False))
    scanned.align_layout()
    assert not (ms.dir / "current").exists() and scanned.active_version() == 1
    back = store.model("m")
    back.align_layout()
    assert os.readlink(ms.dir / "current") == "1" and back.active_version() == 1


def test_a_01_state_directory_leaves_the_served_tree(tmp_path: Path, bucket: Path) -> None:
    """<store>/.modelsync of 0.1 is moved beside the store, history included; the served
    tree then holds the model directory only."""
    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    flags = sidecar_flags(store, bucket)
    assert run_cli("sync", *flags, "--state-dir", str(store / LEGACY_STATE)).returncode == 2
    legacy = Store(store, store / LEGACY_STATE)
    legacy.prepare()
    legacy_state = legacy.model("ranker").load_state()
    legacy_state.refused[7] = "refused in 0.1"
    legacy.model("ranker").save_state(legacy_state)
    out = run_cli("sync", *flags)
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(store)) == ["ranker"]
    moved = Store(store, default_state_dir(store)).model("ranker").load_state()
    assert moved.refused == {7: "refused in 0.1"}


def test_rollback_unpin_sync_leaves_no_duplicate_and_later_revisions_work(
    tmp_path: Path, bucket: Path
) -> None:
    """Issue 10 point 5: manual rollback, unpin, sync brings v2 back without a second
    copy of it in the cache, the older revision is kept, and v3 then activates."""
    store = tmp_path / "data" / "models"
    syncer = Syncer(Store(store, default_state_dir(store)))
    model = ModelConfig(name="ranker", source=f"file://{bucket}")
    for version in (1, 2):
        put_revision(bucket, version, model_files(version))
        assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    assert syncer.rollback_to(model, None, CancelToken()).active == 1
    syncer.unpin(model)
    assert syncer.sync(model, CancelToken()).active == 2
    ms = syncer.store.model("ranker", model.layout)
    assert (ms.served_versions(), ms.cached_versions()) == ([2], [1])
    put_revision(bucket, 3, model_files(3))
    result = syncer.sync(model, CancelToken())
    assert (result.outcome, result.active, result.error) == (Outcome.ACTIVATED, 3, None)
    assert (ms.served_versions(), ms.cached_versions()) == ([3], [2])
