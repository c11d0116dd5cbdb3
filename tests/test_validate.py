"""The TensorFlow load check in a child process, on tiny SavedModels built here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelsync.cancel import CancelToken
from modelsync.checkconfig import ValidateConfig
from modelsync.config import ModelConfig
from modelsync.errors import ModelsyncError, RefusedError
from modelsync.sync import Outcome, Syncer
from modelsync.validate import validate_revision
from modelsync.volume import Store
from tests.helpers import snapshot
from tests.tfmodels import build_models, corrupt_copy

pytestmark = pytest.mark.tensorflow


def _model(config: ValidateConfig) -> ModelConfig:
    return ModelConfig(name="ranker", source="file:///bucket/ranker", validate=config)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tf")
    built = build_models(root, {"good": 2.0})
    built["corrupt"] = corrupt_copy(built["good"], root / "corrupt")
    return built


def test_a_good_model_passes_with_a_smoke_call(models: dict[str, Path]) -> None:
    """Loads, has serving_default, and answers the smoke input."""
    config = ValidateConfig(tensorflow=True, smoke_input={"serving_default": {"x": [[1.0], [2.0]]}})
    validate_revision(models["good"], _model(config), 1, CancelToken())


@pytest.mark.parametrize(
    ("case", "config", "message"),
    [
        ("corrupt", ValidateConfig(tensorflow=True), "checksum"),
        ("good", ValidateConfig(tensorflow=True, signatures=("predict",)), "missing signature"),
        (
            "good",
            ValidateConfig(tensorflow=True, smoke_input={"serving_default": {"x": "not a number"}}),
            "validation failed",
        ),
    ],
)
def test_bad_models_are_refused(
    models: dict[str, Path], case: str, config: ValidateConfig, message: str
) -> None:
    """Corrupted variables, a missing signature, a smoke call that fails: refused."""
    with pytest.raises(RefusedError, match=message):
        validate_revision(models[case], _model(config), 1, CancelToken())


def test_time_limit_is_a_failure_not_a_refusal(models: dict[str, Path]) -> None:
    """A check that runs out of time fails the pass without refusing the revision."""
    with pytest.raises(ModelsyncError, match="did not finish") as info:
        validate_revision(
            models["good"], _model(ValidateConfig(tensorflow=True, timeout=0.2)), 1, CancelToken()
        )
    assert not isinstance(info.value, RefusedError)


def test_sync_refuses_before_the_server_sees_it(tmp_path: Path, models: dict[str, Path]) -> None:
    """With validation on, a corrupt revision never reaches the store."""
    from modelsync.publish import publish

    bucket = tmp_path / "bucket" / "ranker"
    store = tmp_path / "store"
    model = ModelConfig(
        name="ranker", source=f"file://{bucket}", validate=ValidateConfig(tensorflow=True)
    )
    syncer = Syncer(Store(store, store / ".modelsync"))
    publish(models["good"], f"file://{bucket}", version=1)
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    before = snapshot(store / "ranker")
    publish(models["corrupt"], f"file://{bucket}", version=2)
    result = syncer.sync(model, CancelToken())
    assert result.refused == [2] and "TensorFlow validation failed" in (result.error or "")
    assert snapshot(store / "ranker") == before


def test_config_asking_for_tensorflow_without_it_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the tensorflow extra, validate.tensorflow = true is a config error."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorflow" else real(name, *a),
    )
    with pytest.raises(ValidationError, match=r"modelsync\[tensorflow\]"):
        ValidateConfig(tensorflow=True)
