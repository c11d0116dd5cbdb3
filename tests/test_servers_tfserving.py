"""The tfserving preset against examples/tfserver in --poll mode, which behaves as
TensorFlow Serving does (no TF Serving binary installs here): it polls the model
directory, serves the highest version, and reports a failed one in its REST status."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, tfserver_argv
from tests.realservers import ServerProcess, Story, post_json, setup
from tests.tfmodels import build_models, corrupt_copy

pytestmark = [pytest.mark.servers, pytest.mark.tensorflow]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    built = build_models(root, {"1": 1.0, "2": 2.0})
    built["3"] = corrupt_copy(built["2"], root / "3")
    return built


def test_tfserving(
    tmp_path: Path, models: dict[str, Path], server_figures: dict[str, dict[str, object]]
) -> None:
    """v1 before the server exists, v2 swapped, a corrupt v3 rolled back on the server's
    own status error under a client's load with no failed request, restart."""
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
        return float(post_json(url, {"instances": [[1.0]]})["predictions"][0][0])

    story = Story(
        name="tfserving (example)",
        model="ranker",
        at=at,
        revision=revision,
        server=server,
        predict=predict,
        reason_words="UNKNOWN",
    )
    server_figures[story.name] = story.run()
