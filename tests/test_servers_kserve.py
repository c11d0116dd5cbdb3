"""The kserve preset against KServe's ModelServer with the repository of the recipe
(examples/servers/kserve/app.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import write_tree
from tests.realservers import (
    RECIPES,
    ServerProcess,
    Story,
    post_json,
    run_smoke_story,
    server_python,
    setup,
)

pytestmark = pytest.mark.servers


V2_BODY = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [0.0]}]}


def _story(tmp_path: Path) -> Story:
    python = server_python("kserve")
    at = setup("kserve", "add", tmp_path, "http://127.0.0.1:8080")
    store, port = at.store, at.port

    def revision(version: int, k: float, broken: bool) -> Path:
        weights = b"{not json" if broken else json.dumps({"k": k}).encode()
        return write_tree(tmp_path / "src" / str(version), {"weights.json": weights})

    def server() -> ServerProcess:
        return ServerProcess(
            [
                str(python),
                str(RECIPES / "kserve" / "app.py"),
                "--models_dir",
                str(store),
                "--http_port",
                str(port),
            ],
            f"http://127.0.0.1:{port}/v2/health/live",
            tmp_path / "kserve.log",
        )

    def predict() -> float:
        url = f"http://127.0.0.1:{port}/v1/models/add:predict"
        return float(post_json(url, {"instances": [0.0]})["predictions"][0])

    return Story(
        name="kserve",
        model="add",
        at=at,
        revision=revision,
        server=server,
        predict=predict,
        reason_words="JSONDecodeError",
    )


def test_kserve(tmp_path: Path, server_figures: dict[str, dict[str, object]]) -> None:
    """v1 before KServe exists, v2 swapped, a broken v3 rolled back on KServe's own
    error under a client's load with no failed request, restart on the store."""
    story = _story(tmp_path)
    server_figures[story.name] = story.run()


def test_kserve_smoke(tmp_path: Path, server_figures: dict[str, dict[str, object]]) -> None:
    """Smoke requests on KServe (V2 /v2/models/add/infer): v2 passes, v3 loads but answers
    30 for 3 and is rolled back within seconds with the difference, v5 passes; a client
    calling throughout (V1 :predict) sees no failed request."""
    server_figures["kserve smoke"] = run_smoke_story(_story(tmp_path), V2_BODY)
