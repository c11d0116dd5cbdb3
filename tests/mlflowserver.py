"""A real `mlflow server` (PyPI's mlflow, in its own venv from `make mlflow`) on a
free loopback port, sqlite backend store, and a small REST client for the tests."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
MLFLOW_BIN = REPO / ".envs" / "mlflow" / "bin" / "mlflow"
# MLflow's webhook list cache (MLFLOW_WEBHOOK_CACHE_TTL below), plus a margin.
WEBHOOK_CACHE_S = 1.5
# Under load (2 cores, a parallel suite) the server took 80-90 s to answer.
START_TIMEOUT_S = 240.0


def start_mlflow(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`mlflow server` with a sqlite store and artifacts under ``workdir``; (process, URL)."""
    port = free_port()
    env = dict(os.environ)
    # MLflow refuses to deliver webhooks to private addresses unless told: the tests'
    # receiver is on loopback.
    env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] = "true"
    env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"] = "http,https"
    # The server caches the webhooks of each event for this many seconds (default 60):
    # a test's new webhook is seen after a second, not a minute.
    env["MLFLOW_WEBHOOK_CACHE_TTL"] = "1"
    argv = [
        str(MLFLOW_BIN),
        "server",
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root",
        f"file://{workdir / 'artifacts'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    return proc, url
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    proc.wait()
                    log.seek(0)
                    said = log.read().decode(errors="replace").strip().splitlines()[-5:]
                    raise RuntimeError(f"mlflow server did not start: {' | '.join(said)}") from None
                time.sleep(0.5)


@dataclass(frozen=True)
class Registry:
    """MLflow's REST API, as a training pipeline would call it."""

    url: str

    def call(self, method: str, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(doc).encode() if doc is not None else None
        request = urllib.request.Request(
            f"{self.url}/api/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer

    def source_url(self, model: str, alias: str | None = None) -> str:
        """The modelsync source URL of ``model`` (by ``alias``, else its latest)."""
        return f"mlflow+{self.url}/{model}" + (f"@{alias}" if alias else "")

    def register(self, model: str, source: str, run_id: str | None = None) -> int:
        try:
            self.call("POST", "2.0/mlflow/registered-models/create", {"name": model})
        except urllib.error.HTTPError as exc:
            if exc.code != 400:
                raise
        doc: dict[str, Any] = {"name": model, "source": source}
        if run_id:
            doc["run_id"] = run_id
        answer = self.call("POST", "2.0/mlflow/model-versions/create", doc)
        return int(answer["model_version"]["version"])

    def set_alias(self, model: str, alias: str, version: int) -> None:
        doc = {"name": model, "alias": alias, "version": str(version)}
        self.call("POST", "2.0/mlflow/registered-models/alias", doc)

    def new_run(self) -> tuple[str, str]:
        """A run of the default experiment: (run id, its artifact URI)."""
        run = self.call("POST", "2.0/mlflow/runs/create", {"experiment_id": "0"})["run"]["info"]
        return str(run["run_id"]), str(run["artifact_uri"])
