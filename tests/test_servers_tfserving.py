"""The tfserving preset against examples/tfserver in --poll mode, which behaves as
TensorFlow Serving does (no TF Serving binary installs here): it polls the model
directory, serves the highest version, and reports a failed one in its REST status."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, tfserver_argv
from tests.realservers import ServerProcess, Story, http_json, post_json, run_smoke_story, setup
from tests.tfmodels import build_models, corrupt_copy

pytestmark = [pytest.mark.servers, pytest.mark.tensorflow]

TF_BODY = {"instances": [[1.0]]}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    built = build_models(root, {"1": 1.0, "2": 2.0})
    built["3"] = corrupt_copy(built["2"], root / "3")
    return built


@pytest.fixture(scope="module")
def smoke_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per version, a SavedModel answering what the smoke story expects of it: v3
    loads but answers 30."""
    root = tmp_path_factory.mktemp("smoke-models")
    return build_models(root, {"1": 1.0, "2": 2.0, "3": 30.0, "5": 5.0})


def _story(name: str, tmp_path: Path, models: dict[str, Path]) -> Story:
    at = setup("tfserving", "ranker", tmp_path, "http://127.0.0.1:8501")
    store, port = at.store, at.port

    def revision(version: int, k: float, broken: bool) -> Path:
        dest = tmp_path / "src" / str(version)
        shutil.copytree(models[str(version)], dest)
        return dest

    def server() -> ServerProcess:
        return ServerProcess(
            tfserver_argv(store, port, "--poll", "0.5"),
            f"http://127.0.0.1:{port}/v1/models/ranker",
            tmp_path / "tfserver.log",
            env={"TF_CPP_MIN_LOG_LEVEL": "3"},
            cwd=REPO,
        )

    def predict() -> float:
        url = f"http://127.0.0.1:{port}/v1/models/ranker:predict"
        return float(post_json(url, TF_BODY)["predictions"][0][0])

    return Story(
        name=name,
        model="ranker",
        at=at,
        revision=revision,
        server=server,
        predict=predict,
        reason_words="UNKNOWN",
    )


def tf_smoke_doc(body: dict[str, Any], expected: float) -> dict[str, Any]:
    """A smoke file in TF Serving's shape: the first prediction must be ``expected``."""
    expect = {"predictions": [[expected]]}
    request = {"name": "one", "body": body, "expect": expect, "tolerance": 0.01}
    return {"format": 1, "requests": [request]}


def test_tfserving(
    tmp_path: Path, models: dict[str, Path], server_figures: dict[str, dict[str, object]]
) -> None:
    """v1 before the server exists, v2 swapped, a corrupt v3 rolled back on the server's
    own status error under a client's load with no failed request, restart."""
    story = _story("tfserving (example)", tmp_path, models)
    server_figures[story.name] = story.run()


def test_tfserving_versioned_predict(tmp_path: Path, smoke_models: dict[str, Path]) -> None:
    """The example answers TF Serving's /versions/<v>:predict for the version it serves
    and 404 {"error": "Servable not found for request: Specific(ranker, 1)"} for another."""
    story = _story("tfserving versioned", tmp_path, smoke_models)
    shutil.copytree(smoke_models["2"], story.store / "ranker" / "2")
    server = story.server().start()
    try:
        base = f"http://127.0.0.1:{story.at.port}/v1/models/ranker"
        story.wait_for_answer(2.0)
        assert http_json("POST", f"{base}/versions/2:predict", TF_BODY) == (
            200,
            {"predictions": [[2.0]], "model_version": 2},
        )
        assert http_json("POST", f"{base}/versions/1:predict", TF_BODY) == (
            404,
            {"error": "Servable not found for request: Specific(ranker, 1)"},
        )
        status, _ = http_json("POST", f"{base}/versions/x:predict", TF_BODY)
        assert status == 404
    finally:
        server.stop()


def test_tfserving_smoke(
    tmp_path: Path, smoke_models: dict[str, Path], server_figures: dict[str, dict[str, object]]
) -> None:
    """Smoke requests at /v1/models/ranker/versions/<v>:predict: v2 passes, v3 loads but
    answers 30 for 3 and is rolled back within seconds with the difference, v5 passes;
    a client calling throughout sees no failed request."""
    story = _story("tfserving smoke", tmp_path, smoke_models)
    server_figures[story.name] = run_smoke_story(story, TF_BODY, tf_smoke_doc)
