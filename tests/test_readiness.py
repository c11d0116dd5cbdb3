"""/readyz's reasons, read from a real store on disk: none once a revision is served, one
line naming the model and the reason otherwise."""

from __future__ import annotations

from pathlib import Path

from modelsync.config import ModelConfig, default_state_dir
from modelsync.readiness import not_ready
from modelsync.volume import Store
from tests.helpers import publish_local, run_cli


def _store(root: Path) -> Store:
    return Store(root, default_state_dir(root))


def test_a_model_with_nothing_active_is_not_ready(tmp_path: Path) -> None:
    model = ModelConfig(name="m", source=f"file://{tmp_path / 'bucket' / 'm'}")
    assert not_ready([model], _store(tmp_path / "store")) == ["m: no active version"]


def test_a_synced_model_is_ready_and_a_broken_state_file_names_the_model(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket" / "m"
    publish_local(tmp_path, bucket, 1)
    root = tmp_path / "store"
    done = run_cli("sync", "--store", str(root), "--model", "m", "--source", f"file://{bucket}")
    assert done.returncode == 0, done.stderr
    model = ModelConfig(name="m", source=f"file://{bucket}")
    store = _store(root)
    assert not_ready([model], store) == []
    state = store.model("m", model.layout).state_path
    state.write_text("{ not json")
    reasons = not_ready([model], store)
    assert len(reasons) == 1 and reasons[0].startswith("m: "), reasons
