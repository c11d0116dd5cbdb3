"""The bake against a real Triton (Python backend, CPU) and its own metrics port, under a
client's loop: a revision that loads but fails 20 % of requests, and one that answers
3x slower, are rolled back at the end of the bake with the figures in the reason; good
ones are baked and kept; no client request fails besides the bad revision's own."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelsync.config import default_state_dir
from tests.daemonproc import DaemonProcess
from tests.helpers import free_port, run_cli, write_tree
from tests.realservers import RECIPES, Client, ServerProcess, Setup, post_json, server_python, setup
from tests.test_servers_triton import CONFIG_PBTXT, triton_home

pytestmark = pytest.mark.servers

__all__ = ["triton_home"]  # the fixture, shared with the Triton suite

WINDOW_S = 6.0
# Adds weights.json's "k"; sleeps "sleep" seconds per request; fails every
# "fail_every"-th request from inside the model (Triton counts it as a failure).
MODEL_PY = b"""import json, os, time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, "weights.json")) as f:
            w = json.load(f)
        self.k, self.sleep, self.every = float(w["k"]), float(w["sleep"]), int(w["fail_every"])
        self.count = 0

    def execute(self, requests):
        out = []
        for request in requests:
            self.count += 1
            time.sleep(self.sleep)
            if self.every and self.count % self.every == 0:
                raise pb_utils.TritonModelException("injected failure")
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            y = pb_utils.Tensor("Y", (x + self.k).astype(np.float32))
            out.append(pb_utils.InferenceResponse([y]))
        return out
"""


def _story(
    at: Setup,
    model: str,
    revision: Callable[[Path, int, dict[str, float]], dict[str, bytes]],
    server: ServerProcess,
    predict: Callable[[], float],
    tmp_path: Path,
    errors: bool = True,
) -> dict[str, object]:
    """v1 served; a daemon bakes v2 (good, kept), v4 (20 % failing: rolled back), v5
    (good, kept), v6 (3x slower: rolled back) under a client's loop. Returns the
    figures; asserts the reasons and that no client request failed but v4's own."""
    figures: dict[str, object] = {}

    def publish(version: int, sleep: float = 0.01, fail_every: int = 0) -> None:
        weights = {"k": float(version), "sleep": sleep, "fail_every": float(fail_every)}
        root = tmp_path / "src" / str(version)
        src = write_tree(root, revision(root, version, weights))
        out = run_cli("publish", str(src), f"file://{at.bucket}", "--version", str(version))
        assert out.returncode == 0, out.stderr

    def serving() -> int | None:
        try:
            # Not every preset has `current` in its repository: the state dir's always.
            return int(os.readlink(default_state_dir(at.store) / "active" / model))
        except (OSError, ValueError):
            return None

    def wait(want: int, timeout: float = 120) -> float:
        started = time.monotonic()
        while serving() != want:
            assert time.monotonic() - started < timeout, f"never served {want}: {serving()}"
            time.sleep(0.05)
        return time.monotonic()

    publish(1)
    assert run_cli("sync", "--config", str(at.config)).returncode == 0
    server.start()
    daemon: DaemonProcess | None = None
    client = Client(predict)
    try:
        assert run_cli("sync", "--config", str(at.config)).returncode == 0
        client.start()
        daemon = DaemonProcess(["--config", str(at.config)], tmp_path / "daemon.log")
        daemon.wait_http()
        time.sleep(WINDOW_S)  # a window of v1's traffic before the first swap

        def release(version: int, **model: float) -> float:
            publish(version, **model)  # type: ignore[arg-type]
            assert daemon is not None
            deadline = time.monotonic() + 60
            while True:
                # A trigger that lands while a pass runs is that pass's: ask again.
                assert time.monotonic() < deadline, f"never served {version}"
                daemon.http("POST", "/sync")
                asked = time.monotonic()
                while time.monotonic() - asked < 2:
                    if serving() == version:
                        return time.monotonic()
                    time.sleep(0.02)

        def bake_over(version: int) -> dict[str, object]:
            assert daemon is not None
            return daemon.wait_for(
                lambda e: e.get("event") == "bake over" and e.get("version") == version,
                WINDOW_S * 4 + 30,
            )

        release(2)
        assert bake_over(2)["verdict"] == "passed"
        if errors:
            started = release(4, fail_every=5)
            figures["bake_error_rollback_s"] = round(wait(2) - started, 2)
        release(5)
        assert bake_over(5)["verdict"] == "passed"
        started = release(6, sleep=0.03)
        figures["bake_latency_rollback_s"] = round(wait(5) - started, 2)
        time.sleep(1)
    finally:
        client.finish()
        if daemon is not None:
            assert daemon.stop(30) == 0
        server.stop()
    status = json.loads(run_cli("status", "--json", "--config", str(at.config)).stdout)
    refused = status["models"][0]["refused"]
    if errors:
        found = re.search(r"error ratio (\d\.\d+) \(previous 0\.0000\)", refused["4"])
        assert found is not None and 0.15 < float(found[1]) < 0.25, refused
    assert "latency" in refused["6"] and "latency_ratio_max" in refused["6"], refused
    assert status["models"][0]["active_version"] == 5
    own = [f for f in client.failures if "injected failure" in f]
    other = [f for f in client.failures if f not in own]
    figures.update(
        client_ok=client.ok,
        v4_own_failures=len(own),
        other_failures=len(other),
    )
    assert other == [], other[:5]
    assert own or not errors, "v4 failed no request: the client did not reach it"
    for key in [k for k in figures if k.endswith("_rollback_s")]:
        # The window, then the daemon's pass at its end (its interval is 10 minutes).
        assert WINDOW_S <= float(figures[key]) < WINDOW_S + 60, figures  # type: ignore[arg-type]
    return figures


def _bake_config(at: Setup, metrics_url: str) -> None:
    with at.config.open("a") as config:
        config.write(
            f'\n[models.bake]\nwindow = "{WINDOW_S}s"\nmin_requests = 20\n'
            f'metrics_url = "{metrics_url}"\n'
        )


def test_triton_bake(
    tmp_path: Path, triton_home: Path, server_figures: dict[str, dict[str, object]]
) -> None:
    """Triton: v2 good (baked, kept); v4 fails 20 % (rolled back at the bake's end, error
    ratio in the reason); v5 good; v6 3x slower (rolled back, latency in the reason)."""
    at = setup("triton", "add", tmp_path, "http://127.0.0.1:8000")
    metrics_port = free_port()
    _bake_config(at, f"http://127.0.0.1:{metrics_port}/metrics")

    def revision(root: Path, version: int, weights: dict[str, float]) -> dict[str, bytes]:
        return {
            "config.pbtxt": CONFIG_PBTXT,
            "model.py": MODEL_PY,
            "weights.json": json.dumps(weights).encode(),
        }

    def predict() -> float:
        doc = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [0.0]}]}
        answer = post_json(f"http://127.0.0.1:{at.port}/v2/models/add/infer", doc)
        return float(answer["outputs"][0]["data"][0])

    venv_bin = server_python("triton").parent
    server = ServerProcess(
        [
            str(triton_home / "bin" / "tritonserver"),
            f"--model-repository={at.store}",
            f"--backend-directory={triton_home / 'backends'}",
            "--model-control-mode=explicit",
            "--http-address=127.0.0.1",
            f"--http-port={at.port}",
            "--allow-grpc=false",
            "--allow-metrics=true",
            f"--metrics-port={metrics_port}",
        ],
        f"http://127.0.0.1:{at.port}/v2/health/live",
        tmp_path / "triton.log",
        env={"LD_LIBRARY_PATH": str(triton_home / "libs"), "PATH": f"{venv_bin}:/usr/bin:/bin"},
    )
    server_figures["triton (bake)"] = _story(at, "add", revision, server, predict, tmp_path)


# An MLServer runtime: adds "k", sleeps "sleep" seconds, fails every "fail_every"-th
# request. One module name per version: MLServer imports it from the model's folder,
# and Python would reuse an earlier version's module of the same name.
RUNTIME = """import asyncio, json, os
from mlserver import MLModel
from mlserver.codecs import NumpyCodec

class Model(MLModel):
    async def load(self):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "weights.json")) as f:
            w = json.load(f)
        self.k, self.sleep, self.every = w["k"], w["sleep"], int(w["fail_every"])
        self.count = 0
        return True

    async def predict(self, payload):
        self.count += 1
        await asyncio.sleep(self.sleep)
        if self.every and self.count % self.every == 0:
            raise ValueError("injected failure")
        x = NumpyCodec.decode_input(payload.inputs[0])
        return self._inference_response(x + self.k)

    def _inference_response(self, y):
        from mlserver.types import InferenceResponse
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("y", y)])
"""


def test_mlserver_bake(tmp_path: Path, server_figures: dict[str, dict[str, object]]) -> None:
    """MLServer, the same story on its metrics port (model_infer_request_* series)."""
    python = server_python("mlserver")
    at = setup("mlserver", "iris", tmp_path, "http://127.0.0.1:8080")
    metrics_port = free_port()
    _bake_config(at, f"http://127.0.0.1:{metrics_port}/metrics")

    def revision(root: Path, version: int, weights: dict[str, float]) -> dict[str, bytes]:
        # No parameters.version: MLServer then swaps in place (new loaded before the
        # old unloads); a versioned settings file makes every swap fail requests on the
        # unversioned route for the length of the load (docs/servers.md).
        settings = {"name": "iris", "implementation": f"runtime_v{version}.Model"}
        return {
            "model-settings.json": json.dumps(settings).encode(),
            f"runtime_v{version}.py": RUNTIME.encode(),
            "weights.json": json.dumps(weights).encode(),
        }

    def predict() -> float:
        doc = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [0.0]}]}
        answer = post_json(f"http://127.0.0.1:{at.port}/v2/models/iris/infer", doc)
        return float(answer["outputs"][0]["data"][0])

    server = ServerProcess(
        [str(python.parent / "mlserver"), "start", str(at.store)],
        f"http://127.0.0.1:{at.port}/v2/health/live",
        tmp_path / "mlserver.log",
        env={
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(at.port),
            "MLSERVER_GRPC_PORT": str(free_port()),
            "MLSERVER_METRICS_PORT": str(metrics_port),
            "MLSERVER_MODEL_REPOSITORY_ROOT": str(at.store),
        },
    )
    server_figures["mlserver (bake)"] = _story(at, "iris", revision, server, predict, tmp_path)


# KServe's example server (examples/servers/kserve/app.py) with a model that also sleeps
# "sleep" seconds per request: KServe's metrics time predict() (no failure counter).
KSERVE_APP = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv.pop(1))
import app

class SlowAdd(app.AddModel):
    def load(self):
        weights = json.loads((self.path / "weights.json").read_text())
        self.k, self.sleep = float(weights["k"]), float(weights["sleep"])
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        time.sleep(self.sleep)
        return {"predictions": [float(x) + self.k for x in payload["instances"]]}

app.AddModel = SlowAdd
app.main()
"""


def test_kserve_bake(tmp_path: Path, server_figures: dict[str, dict[str, object]]) -> None:
    """KServe, on its /metrics predict histogram: v2 good (kept), v6 3x slower rolled back
    on its p99 latency; no failed client request (KServe counts no failures, so there
    is no 20 % failing revision to judge)."""
    python = server_python("kserve")
    at = setup("kserve", "add", tmp_path, "http://127.0.0.1:8080")
    _bake_config(at, f"http://127.0.0.1:{at.port}/metrics")
    launcher = tmp_path / "slow_app.py"
    launcher.write_text(KSERVE_APP)

    def revision(root: Path, version: int, weights: dict[str, float]) -> dict[str, bytes]:
        return {"weights.json": json.dumps(weights).encode()}

    def predict() -> float:
        url = f"http://127.0.0.1:{at.port}/v1/models/add:predict"
        return float(post_json(url, {"instances": [0.0]})["predictions"][0])

    server = ServerProcess(
        [
            str(python),
            str(launcher),
            str(RECIPES / "kserve"),
            "--models_dir",
            str(at.store),
            "--http_port",
            str(at.port),
        ],
        f"http://127.0.0.1:{at.port}/v2/health/live",
        tmp_path / "kserve.log",
    )
    server_figures["kserve (bake)"] = _story(
        at, "add", revision, server, predict, tmp_path, errors=False
    )
