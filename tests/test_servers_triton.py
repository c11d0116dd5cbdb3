"""The triton preset against the real Triton Inference Server (the binary nvidia-pytriton
bundles, CPU, Python backend), in explicit and in poll mode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import run_cli, write_tree
from tests.realservers import (
    ServerProcess,
    Story,
    post_json,
    run_smoke_story,
    server_python,
    setup,
)

pytestmark = pytest.mark.servers

CONFIG_PBTXT = b"""backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""

# Adds weights.json's "k" to its input; a weights.json that is not JSON fails the load.
MODEL_PY = b"""import json, os
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, "weights.json")) as f:
            self.k = float(json.load(f)["k"])

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            y = (x + self.k).astype(np.float32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", y)]))
        return out
"""


V2_BODY = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [0.0]}]}


@pytest.fixture(scope="module")
def triton_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Triton's binaries with the Python 3.11 backend stub in place, as PyTriton does."""
    python = server_python("triton")
    site = next(python.parent.parent.glob("lib/python3.*/site-packages"))
    home = tmp_path_factory.mktemp("triton") / "tritonserver"
    shutil.copytree(
        site / "pytriton" / "tritonserver",
        home,
        ignore=shutil.ignore_patterns("python_backend_stubs"),
    )
    stub = site / "pytriton" / "tritonserver" / "python_backend_stubs" / "3.11"
    shutil.copy(stub / "triton_python_backend_stub", home / "backends" / "python")
    (home / "libs").symlink_to(site / "nvidia_pytriton.libs")
    return home


def _story(tmp_path: Path, home: Path, mode: str) -> Story:
    at = setup(
        "triton",
        "add",
        tmp_path,
        "http://127.0.0.1:8000",
        {'mode = "explicit"': f'mode = "{mode}"'},
    )
    store, port = at.store, at.port
    venv_bin = server_python("triton").parent

    def revision(version: int, k: float, broken: bool) -> Path:
        weights = b"{not json" if broken else json.dumps({"k": k}).encode()
        files = {"config.pbtxt": CONFIG_PBTXT, "model.py": MODEL_PY, "weights.json": weights}
        return write_tree(tmp_path / "src" / str(version), files)

    def server() -> ServerProcess:
        control = (
            ["--model-control-mode=explicit"]
            if mode == "explicit"
            else ["--model-control-mode=poll", "--repository-poll-secs=1"]
        )
        return ServerProcess(
            [
                str(home / "bin" / "tritonserver"),
                f"--model-repository={store}",
                f"--backend-directory={home / 'backends'}",
                *control,
                "--http-address=127.0.0.1",
                f"--http-port={port}",
                "--allow-grpc=false",
                "--allow-metrics=false",
            ],
            f"http://127.0.0.1:{port}/v2/health/live",
            tmp_path / "triton.log",
            env={"LD_LIBRARY_PATH": str(home / "libs"), "PATH": f"{venv_bin}:/usr/bin:/bin"},
        )

    def predict() -> float:
        answer = post_json(f"http://127.0.0.1:{port}/v2/models/add/infer", V2_BODY)
        return float(answer["outputs"][0]["data"][0])

    return Story(
        name=f"triton ({mode})",
        model="add",
        at=at,
        revision=revision,
        server=server,
        predict=predict,
        reason_words="JSONDecodeError",
        model_files=("config.pbtxt",),
    )


@pytest.mark.parametrize("mode", ["explicit", "poll"])
def test_triton(
    tmp_path: Path, triton_home: Path, mode: str, server_figures: dict[str, dict[str, object]]
) -> None:
    """v1 before Triton exists, v2 swapped, broken v3 rolled back on Triton's own error
    under a client's load with no failed request, restart on the store; config.pbtxt
    travels with the revision; files Triton writes do not make verify fail."""
    story = _story(tmp_path, triton_home, mode)
    server_figures[story.name] = story.run()
    placed = story.store / "add" / "config.pbtxt"
    assert placed.read_bytes() == CONFIG_PBTXT
    served = story.store / "add" / "2"
    assert (served / "__pycache__").is_dir()  # Triton's Python backend wrote it
    out = run_cli("verify", str(served))
    assert out.returncode == 0 and "__pycache__" in out.stderr, out.stderr
    assert run_cli("verify", "--strict", str(served)).returncode == 1


def test_triton_smoke(
    tmp_path: Path, triton_home: Path, server_figures: dict[str, dict[str, object]]
) -> None:
    """Smoke requests on Triton (explicit): v2 passes at /versions/2/infer, v3 loads but
    answers 30 for 3 and is rolled back within seconds with the difference, v5 passes;
    a client calling throughout sees no failed request."""
    story = _story(tmp_path, triton_home, "explicit")
    server_figures["triton smoke"] = run_smoke_story(story, V2_BODY)
