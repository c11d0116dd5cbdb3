"""The mlserver preset against real Seldon MLServer with mlserver-sklearn."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli, write_tree
from tests.realservers import (
    Client,
    ServerProcess,
    Story,
    free_port,
    http_json,
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
        # v1 and v2 name no version: MLServer serves them unversioned and swaps one for
        # the other in place, the one hitless swap it has (docs/servers.md). A
        # versioned v1 left a window: a CI run saw one 404 during v1 -> v2.
        if version not in (1, 2):
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


# A runtime whose load takes a second, so that MLServer's load window is wide enough
# for a client's loop to land in it every time.
SLOW_LOAD = """
import asyncio
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceResponse

class Model(MLModel):
    async def load(self):
        await asyncio.sleep(1)
        return True

    async def predict(self, payload):
        y = NumpyCodec.decode_input(payload.inputs[0]) + K
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("y", y)])
"""


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "unversioned"])
def test_mlserver_swap_window(tmp_path: Path, versioned: bool) -> None:
    """MLServer 1.7.1 fails requests on /v2/models/<m>/infer while modelsync swaps one
    versioned model-settings.json for another (the new version is its default before it
    is loaded) and none when the settings name no version (new loaded, then old dropped)."""
    python = server_python("mlserver")
    at = setup("mlserver", "iris", tmp_path, "http://127.0.0.1:8080")

    def publish(version: int) -> None:
        settings: dict[str, object] = {"name": "iris", "implementation": f"v{version}.Model"}
        if versioned:
            settings["parameters"] = {"version": str(version)}
        src = write_tree(
            tmp_path / "src" / str(version),
            {
                "model-settings.json": json.dumps(settings).encode(),
                # One module name per version: Python would reuse an imported one.
                f"v{version}.py": f"K = {version}.0\n{SLOW_LOAD}".encode(),
            },
        )
        out = run_cli("publish", str(src), f"file://{at.bucket}", "--version", str(version))
        assert out.returncode == 0, out.stderr

    def predict() -> float:
        answer = post_json(f"http://127.0.0.1:{at.port}/v2/models/iris/infer", V2_BODY)
        return float(answer["outputs"][0]["data"][0])

    publish(1)
    assert run_cli("sync", "--config", str(at.config)).returncode == 0
    server = ServerProcess(
        [str(python.parent / "mlserver"), "start", str(at.store)],
        f"http://127.0.0.1:{at.port}/v2/health/live",
        tmp_path / "mlserver.log",
        env={
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(at.port),
            "MLSERVER_GRPC_PORT": str(free_port()),
            "MLSERVER_METRICS_PORT": str(free_port()),
            "MLSERVER_MODEL_REPOSITORY_ROOT": str(at.store),
        },
    )
    server.start()
    client = Client(predict)
    try:
        # MLServer answers its health route before its first load is over.
        deadline = time.monotonic() + 60
        while http_json("GET", f"http://127.0.0.1:{at.port}/v2/models/iris/ready")[0] != 200:
            assert time.monotonic() < deadline, server.tail()
            time.sleep(0.1)
        client.start()
        time.sleep(0.5)
        publish(2)
        out = run_cli("sync", "--config", str(at.config), timeout=300)
        assert out.returncode == 0, out.stderr
        time.sleep(0.5)
    finally:
        client.finish()
        server.stop()
    assert client.seen[0] == 1.0 and client.seen[-1] == 2.0, client.seen
    if versioned:
        assert any("is not ready yet" in f for f in client.failures), client.failures[:5]
    else:
        assert client.failures == [], client.failures[:5]
