"""A reload's plan from two real configurations: what stops, starts, restarts, changes in
place, is warned about again, or why nothing changes."""

from __future__ import annotations

from pathlib import Path

from modelsync.config import AdminConfig, Config, ModelConfig
from modelsync.reconfigure import plan


def _config(store: Path, *models: ModelConfig, **extra: object) -> Config:
    return Config.model_validate({"store": store, "models": models, **extra})


def test_models_removed_added_restarted_and_updated(tmp_path: Path) -> None:
    keep = ModelConfig(name="keep", source="gs://b/keep")
    moved = ModelConfig(name="moved", source="gs://b/moved")
    tuned = ModelConfig(name="tuned", source="gs://b/tuned")
    gone = ModelConfig(name="gone", source="gs://b/gone")
    old = _config(tmp_path, keep, moved, tuned, gone)
    new_model = ModelConfig(name="new", source="s3://b/new")
    new = _config(
        tmp_path,
        keep,
        moved.model_copy(update={"source": "s3://other/moved"}),
        tuned.model_copy(update={"keep": 7}),
        new_model,
    )
    steps = plan(old, new)
    assert steps.refused is None and not steps.admin_changed
    assert steps.removed == ["gone"]
    assert [m.name for m in steps.added] == ["new"]
    assert [(m.name, m.source) for m in steps.restarted] == [("moved", "s3://other/moved")]
    assert [(m.name, m.keep) for m in steps.updated] == [("tuned", 7)]
    # A new model's verify settings are said once, as at start-up; unchanged ones not.
    assert [m.name for m in steps.verify_changed] == ["new"]
    assert steps.triggered == ["keep", "moved", "new", "tuned"]


def test_a_moved_store_or_state_dir_is_refused_whole(tmp_path: Path) -> None:
    model = ModelConfig(name="m", source="gs://b/m")
    old = _config(tmp_path / "a", model)
    for new in (
        _config(tmp_path / "b", model),
        _config(tmp_path / "a", model, state_dir=tmp_path / "state"),
    ):
        steps = plan(old, new)
        assert steps.refused is not None and "store and state_dir" in steps.refused
        assert not (steps.removed or steps.added or steps.restarted or steps.triggered)


def test_an_admin_change_is_flagged_for_a_restart(tmp_path: Path) -> None:
    model = ModelConfig(name="m", source="gs://b/m")
    old = _config(tmp_path, model)
    new = _config(tmp_path, model, admin=AdminConfig(listen="127.0.0.1:9999"))
    steps = plan(old, new)
    assert steps.admin_changed and steps.refused is None
    assert steps.triggered == ["m"] and not steps.updated
