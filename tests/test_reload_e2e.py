"""End to end with real TensorFlow: reference server, notify + confirm, rollback, no failed
request throughout."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonproc import free_port
from tests.helpers import REPO, check_invariants, run_cli, tfserver_argv
from tests.tfmodels import build_models, corrupt_copy

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    built = build_models(root, {"v1": 2.0, "v2": 3.0, "v4": 5.0})
    built["v3"] = corrupt_copy(built["v2"], root / "v3")
    return built


class Server:
    def __init__(self, store: Path, pidfile: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            tfserver_argv(store, self.port, "--pidfile", str(pidfile)),
            cwd=REPO,
            stdout=self.log,
            stderr=self.log,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        deadline = time.monotonic() + 60
        while not pidfile.exists():
            assert time.monotonic() < deadline and self.proc.poll() is None, log.read_text()
            time.sleep(0.1)

    def predict(self, value: float) -> tuple[int, dict[str, object]]:
        body = json.dumps({"instances": [[value]]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/models/ranker:predict", data=body, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), json.loads(exc.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "store", tmp_path / "tfserver.pid", tmp_path / "server.log")
    yield running
    running.stop()


def _config(tmp_path: Path, server: Server, bucket: Path) -> Path:
    config = tmp_path / "modelsync.toml"
    config.write_text(f"""
store = "{tmp_path / "store"}"
[[models]]
name = "ranker"
source = "file://{bucket}"
[models.notify]
method = "signal"
pidfile = "{tmp_path / "tfserver.pid"}"
[models.confirm]
method = "tfserving"
url = "http://127.0.0.1:{server.port}/v1/models/{{model}}"
timeout = "60s"
period = "0.2s"
""")
    return config


def test_publish_reload_rollback_refuse_recover(
    tmp_path: Path, models: dict[str, Path], server: Server
) -> None:
    """v1, v2 served after notify+confirm; bad v3 rolled back and never retried; v4 served;
    a client predicting all along sees no failed request."""
    bucket = tmp_path / "bucket" / "ranker"
    config = _config(tmp_path, server, bucket)
    store = tmp_path / "store"

    def publish(name: str, version: int) -> None:
        out = run_cli("publish", str(models[name]), f"file://{bucket}", "--version", str(version))
        assert out.returncode == 0, out.stderr

    def sync() -> subprocess.CompletedProcess[str]:
        return run_cli("sync", "--config", str(config), timeout=180)

    publish("v1", 1)
    out = sync()
    assert out.returncode == 0, out.stderr
    assert server.predict(1.0) == (200, {"predictions": [[2.0]], "model_version": 1})

    failures: list[object] = []
    seen: set[float] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            status, answer = server.predict(1.0)
            if status != 200:
                failures.append(answer)
            else:
                seen.add(answer["predictions"][0][0])  # type: ignore[index]

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        publish("v2", 2)
        out = sync()
        assert out.returncode == 0, out.stderr
        assert server.predict(1.0)[1]["model_version"] == 2

        publish("v3", 3)
        out = sync()
        assert out.returncode == 1
        events = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
        rollback = next(e for e in events if e["event"].startswith("server did not take"))
        assert "checksum" in rollback["reason"].lower()
        assert os.readlink(store / "ranker" / "current") == "2"
        assert server.predict(1.0)[1] == {"predictions": [[3.0]], "model_version": 2}
        assert check_invariants(store, "ranker").violations == []
        status = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)
        assert "3" in status["models"][0]["refused"]

        again = sync()
        assert again.returncode == 0
        assert "downloading" not in again.stderr

        publish("v4", 4)
        out = sync()
        assert out.returncode == 0, out.stderr
        assert server.predict(1.0)[1] == {"predictions": [[5.0]], "model_version": 4}
    finally:
        stop.set()
        thread.join(10)
    assert failures == []
    assert seen == {3.0, 5.0} or seen == {2.0, 3.0, 5.0}


def test_manual_rollback_pins_until_unpin(
    tmp_path: Path, models: dict[str, Path], server: Server
) -> None:
    """`modelsync rollback` serves the previous revision and pins it; `unpin` lets go."""
    bucket = tmp_path / "bucket" / "ranker"
    config = _config(tmp_path, server, bucket)
    for name, version in (("v1", 1), ("v2", 2)):
        assert (
            run_cli(
                "publish", str(models[name]), f"file://{bucket}", "--version", str(version)
            ).returncode
            == 0
        )
        assert run_cli("sync", "--config", str(config), timeout=180).returncode == 0
    out = run_cli("rollback", "ranker", "--config", str(config), timeout=180)
    assert out.returncode == 0, out.stderr
    assert server.predict(1.0)[1]["model_version"] == 1
    assert run_cli("sync", "--config", str(config), timeout=180).returncode == 0
    assert server.predict(1.0)[1]["model_version"] == 1  # pinned
    assert run_cli("unpin", "ranker", "--config", str(config)).returncode == 0
    assert run_cli("sync", "--config", str(config), timeout=180).returncode == 0
    assert server.predict(1.0)[1]["model_version"] == 2
