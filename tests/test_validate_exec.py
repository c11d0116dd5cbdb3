"""validate.exec: the user's own loader runs on the staged revision before any server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.checkconfig import ValidateConfig
from modelsync.config import ModelConfig
from modelsync.errors import ModelsyncError, RefusedError
from modelsync.sync import Outcome, Syncer
from modelsync.validate import validate_revision
from modelsync.volume import Store
from tests.helpers import check_invariants, model_files, put_revision, snapshot

# Loads weights.json the way a server would; exits 1 with the error when it cannot.
LOADER = """
import json, os, pathlib, sys
root = pathlib.Path(os.environ["MODELSYNC_PATH"])
assert os.environ["MODELSYNC_MODEL"] == "ranker", os.environ["MODELSYNC_MODEL"]
try:
    json.loads((root / "weights.json").read_text())
except Exception as exc:
    sys.exit(f"cannot load {root.name}: {type(exc).__name__}: {exc}")
"""


def _model(bucket: Path, **validate: object) -> ModelConfig:
    return ModelConfig(
        name="ranker",
        source=f"file://{bucket}",
        validate=ValidateConfig.model_validate(
            {"exec": [sys.executable, "-c", LOADER], **validate}
        ),
    )


def test_a_revision_the_loader_rejects_never_reaches_the_store(bucket: Path, store: Path) -> None:
    """v1 loads and is served; v2's weights do not parse: refused with the loader's words,
    and the store is byte for byte as before."""
    syncer = Syncer(Store(store, store.parent / "state"))
    put_revision(bucket, 1, {**model_files(1), "weights.json": b'{"k": 1}'})
    assert syncer.sync(_model(bucket), CancelToken()).outcome is Outcome.ACTIVATED
    before = snapshot(store)
    put_revision(bucket, 2, {**model_files(2), "weights.json": b"{not json"})
    result = syncer.sync(_model(bucket), CancelToken())
    assert result.refused == [2]
    assert "validate.exec" in (result.error or "") and "JSONDecodeError" in (result.error or "")
    assert snapshot(store) == before
    assert check_invariants(store, "ranker").active == 1
    again = syncer.sync(_model(bucket), CancelToken())
    assert again.outcome is Outcome.UNCHANGED and again.refused == []


def test_time_limit_fails_the_pass_without_refusing(tmp_path: Path) -> None:
    """A loader that runs out of time is killed; the revision may be tried again."""
    model = ModelConfig(
        name="ranker",
        source="file:///bucket/ranker",
        validate=ValidateConfig.model_validate(
            {"exec": [sys.executable, "-c", "import time; time.sleep(30)"], "timeout": "0.5s"}
        ),
    )
    with pytest.raises(ModelsyncError, match=r"did not finish within 0\.5s") as info:
        validate_revision(tmp_path, model, 3, CancelToken())
    assert not isinstance(info.value, RefusedError)


def test_a_missing_loader_is_a_failure_naming_it(tmp_path: Path) -> None:
    """A command that does not exist fails the pass with one line naming it."""
    model = ModelConfig(
        name="ranker",
        source="file:///bucket/ranker",
        validate=ValidateConfig.model_validate({"exec": ["/no/such/loader"]}),
    )
    with pytest.raises(ModelsyncError, match="cannot run /no/such/loader") as info:
        validate_revision(tmp_path, model, 3, CancelToken())
    assert not isinstance(info.value, RefusedError)


def test_a_loader_that_floods_stderr_is_refused_with_the_end_of_its_last_line(
    tmp_path: Path,
) -> None:
    """Red team round 4b: 64 MiB of stderr (a verbose or crash-looping tool) costs a
    bounded tail, not the whole, and the refusal quotes the end of the last line, where
    the tool's own words are, not its noise."""
    noise = "import sys; sys.stderr.write('e' * (64 << 20)); sys.stderr.write('bad weights')"
    model = ModelConfig(
        name="ranker",
        source="file:///bucket/ranker",
        validate=ValidateConfig.model_validate(
            {"exec": [sys.executable, "-c", noise + "; sys.exit(3)"], "timeout": "60s"}
        ),
    )
    with pytest.raises(RefusedError) as info:
        validate_revision(tmp_path, model, 3, CancelToken())
    said = str(info.value)
    assert said.startswith("validate.exec") and "(exit 3)" in said, said[:200]
    assert said.endswith("bad weights") and len(said) < 600
