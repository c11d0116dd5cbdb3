"""The mlserver preset against real Seldon MLServer with mlserver-sklearn."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import write_tree
from tests.realservers import (
    ServerProcess,
    Story,
    free_port,
    post_json,
    run_smoke_story,
    server_python,
    setup,
)

pytestmark = pytest.mark.servers

# Run by MLServer's own interpreter: a regressor that always answers k.
DUMP = """
import sys, joblib, numpy as np
from sklearn.dummy import DummyRegressor
k = float(sys.argv[2])
model = DummyRegressor(strategy="constant", constant=k).fit(np.zeros((2, 1)), [k, k])
joblib.dump(model, sys.argv[1])
"""


V2_BODY = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [0.0]}]}


def _story(tmp_path: Path) -> Story:
    python = server_python("mlserver")
    at = setup("mlserver", "iris", tmp_path, "http://127.0.0.1:8080")
    store, port = at.store, at.port

    def revision(version: int, k: float, broken: bool) -> Path:
        root = tmp_path / "src" / str(version)
        root.mkdir(parents=True)
        model = root / "model.joblib"
        subprocess.run([str(python), "-c", DUMP, str(model), str(k)], check=True)
        if broken:  # cut short, as an interrupted export would leave it
            model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
        settings: dict[str, object] = {
            "name": "iris",
            "implementation": "mlserver_sklearn.SKLearnModel",
        }
        if version != 2:  # v2 names no version: MLServer serves it unversioned
            settings["parameters"] = {"version": str(version)}
        return write_tree(root, {"model-settings.json": json.dumps(settings).encode()})

    def server() -> ServerProcess:
        return ServerProcess(
            [str(python.parent / "mlserver"), "start", str(store)],
            f"http://127.0.0.1:{port}/v2/health/live",
            tmp_path / "mlserver.log",
            env={
                "MLSERVER_HOST": "127.0.0.1",
                "MLSERVER_HTTP_PORT": str(port),
                "MLSERVER_GRPC_PORT": str(free_port()),
                "MLSERVER_METRICS_PORT": str(free_port()),
                "MLSERVER_MODEL_REPOSITORY_ROOT": str(store),
            },
        )

    def predict() -> float:
        answer = post_json(f"http://127.0.0.1:{port}/v2/models/iris/infer", V2_BODY)
        return float(answer["outputs"][0]["data"][0])

    return Story(
        name="mlserver",
        model="iris",
        at=at,
        revision=revision,
        server=server,
        predict=predict,
        reason_words="UnpicklingError",
    )


def test_mlserver(tmp_path: Path, server_figures: dict[str, dict[str, object]]) -> None:
    """v1 before MLServer exists, v2 (settings without a version) swapped, a broken v3
    rolled back on MLServer's own error under a client's load, restart on the store."""
    story = _story(tmp_path)
    server_figures[story.name] = story.run()


def test_mlserver_smoke(tmp_path: Path, server_figures: dict[str, dict[str, object]]) -> None:
    """Smoke requests on MLServer: v2 (unversioned settings) passes at /v2/models/iris/infer,
    v3 loads but answers 30 for 3 and is rolled back within seconds with the difference,
    v5 passes at /versions/5/infer; a client calling throughout sees no failed request."""
    server_figures["mlserver smoke"] = run_smoke_story(_story(tmp_path), V2_BODY)
