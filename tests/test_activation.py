"""The end of a pass against a scripted server: a first revision with no server yet,
confirmed or refused once it answers; a server that lost its model; a rollback
interrupted by SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from modelsync.config import default_state_dir
from modelsync.volume import Store
from tests.daemonproc import DaemonProcess
from tests.helpers import free_port, model_files, put_revision, run_cli
from tests.httpstub import http_stub

FAILED = (500, b'{"error": "load failed: bad weights"}')


def _config(tmp_path: Path, store: Path, bucket: Path, url: str, notify: str = "") -> Path:
    """notify = none with confirm = tfserving-like http: the pair deploy/kubernetes uses."""
    path = tmp_path / "modelsync.toml"
    path.write_text(
        f'store = "{store}"\n[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
        f"{notify}"
        f'[models.confirm]\nmethod = "http"\nurl = "{url}/{{version}}"\n'
        'json_field = "version"\nfail_status = [500]\ntimeout = "20s"\nperiod = "0.05s"\n'
    )
    return path


def _state(store: Path) -> dict[str, object]:
    path = default_state_dir(store) / "state" / "ranker.json"
    doc: dict[str, object] = json.loads(path.read_text())
    return doc


def test_init_container_order_keeps_the_first_revision(tmp_path: Path, bucket: Path) -> None:
    """Issue 10 point 1: sync --require before the server exists exits 0 at once and
    keeps v1 (twice); once the server answers, the next pass confirms it."""
    store, port = tmp_path / "data" / "models", free_port()
    config = _config(tmp_path, store, bucket, f"http://127.0.0.1:{port}")
    put_revision(bucket, 1, model_files(1))
    for _ in range(2):
        started = time.monotonic()
        out = run_cli("sync", "--require", "--config", str(config))
        assert out.returncode == 0, out.stderr
        assert time.monotonic() - started < 10  # not the 20 s confirm timeout
    status = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)
    assert (status["models"][0]["active_version"], status["models"][0]["confirmed"]) == (1, False)
    text = run_cli("status", "--config", str(config)).stdout
    assert "unconfirmed" in text
    assert _state(store)["refused"] == {}
    answer = (200, b'{"version": 1}')
    with http_stub(lambda m, p, b: answer, port=port):
        out = run_cli("sync", "--config", str(config))
        assert out.returncode == 0, out.stderr
        assert "server serves the active revision" in out.stderr
    assert _state(store)["confirmed"] is True


def test_a_standing_revision_the_server_then_refuses_is_rolled_back(
    tmp_path: Path, bucket: Path
) -> None:
    """The first revision stood without a server; the server, once up, fails it: it is
    refused with the server's words and the next revision is taken."""
    store, port = tmp_path / "data" / "models", free_port()
    config = _config(tmp_path, store, bucket, f"http://127.0.0.1:{port}")
    put_revision(bucket, 1, model_files(1))
    assert run_cli("sync", "--config", str(config)).returncode == 0

    def answer(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        version = int(p.rsplit("/", 1)[1])
        return FAILED if version == 1 else (200, json.dumps({"version": version}).encode())

    with http_stub(answer, port=port):
        out = run_cli("sync", "--config", str(config))
        assert out.returncode == 1
        assert "bad weights" in _state(store)["refused"]["1"]  # type: ignore[index]
        put_revision(bucket, 2, model_files(2))
        out = run_cli("sync", "--config", str(config))
        assert out.returncode == 0, out.stderr
    status = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)
    assert status["models"][0]["active_version"] == 2


def test_a_server_that_lost_the_model_is_told_again(tmp_path: Path, bucket: Path) -> None:
    """A restarted server (explicit load) answers 'absent': the pass notifies it again
    and confirms, without touching the store."""
    store, port = tmp_path / "data" / "models", free_port()
    loaded: set[int] = set()

    def answer(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        if m == "POST":
            loaded.add(1)
            return 200, b"{}"
        return 200, json.dumps({"version": max(loaded, default=0)}).encode()

    notify = f'[models.notify]\nmethod = "http"\nurl = "http://127.0.0.1:{port}/load"\n'
    config = _config(tmp_path, store, bucket, f"http://127.0.0.1:{port}", notify)
    put_revision(bucket, 1, model_files(1))
    with http_stub(answer, port=port) as (_, seen):
        assert run_cli("sync", "--config", str(config)).returncode == 0
        loaded.clear()  # the server restarted
        out = run_cli("sync", "--config", str(config))
        assert out.returncode == 0, out.stderr
        assert "telling it again" in out.stderr
        assert [r for r in seen if r[0] == "POST"] and loaded == {1}


def test_a_rollback_cut_by_sigterm_still_refuses_the_revision(tmp_path: Path, bucket: Path) -> None:
    """Issue 10 point 5: SIGTERM while the previous revision is being confirmed; the next
    pass finishes the rollback and refuses the bad revision (it is not tried again)."""
    store = tmp_path / "data" / "models"
    hang = threading.Event()
    release = threading.Event()

    def answer(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        version = int(p.rsplit("/", 1)[1])
        if version == 2:
            hang.set()  # the rollback's confirm of version 1 comes next: hold it
            return FAILED
        if hang.is_set():
            release.wait(20)
        return 200, json.dumps({"version": version}).encode()

    with http_stub(answer) as (url, _):
        config = _config(tmp_path, store, bucket, url)
        put_revision(bucket, 1, model_files(1))
        assert run_cli("sync", "--config", str(config)).returncode == 0
        put_revision(bucket, 2, model_files(2))
        log = tmp_path / "sync.log"
        with log.open("wb") as err:
            child = subprocess.Popen(
                [sys.executable, "-m", "modelsync", "sync", "--config", str(config)],
                stderr=err,
            )
            deadline = time.monotonic() + 30
            while "rolling back" not in log.read_text():
                assert time.monotonic() < deadline and child.poll() is None, log.read_text()
                time.sleep(0.05)
            time.sleep(0.3)  # inside the confirm of version 1
            child.send_signal(signal.SIGTERM)
            assert child.wait(10) != 0
        state = Store(store, default_state_dir(store)).model("ranker").load_state()
        assert state.pending is not None and state.pending.phase == "rolling_back"
        hang.clear()
        release.set()
        run_cli("sync", "--config", str(config))
        assert "bad weights" in _state(store)["refused"]["2"]  # type: ignore[index]
        assert (store / "ranker" / "current").resolve().name == "1"
        again = run_cli("sync", "--config", str(config))
        assert again.returncode == 0 and "downloading" not in again.stderr, again.stderr


def test_the_daemon_confirms_a_standing_revision_once_the_server_answers(
    tmp_path: Path, bucket: Path, procs: list[DaemonProcess]
) -> None:
    """The sidecar after an init container: interval 1 h, no server yet; when the server
    comes up the daemon confirms within seconds (it asks again soon, not in an hour)."""
    store, port = tmp_path / "data" / "models", free_port()
    config = _config(tmp_path, store, bucket, f"http://127.0.0.1:{port}")
    config.write_text(config.read_text().replace("[[models]]", 'interval = "1h"\n[[models]]'))
    put_revision(bucket, 1, model_files(1))
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "daemon.log")
    procs.append(daemon)
    daemon.wait_for(lambda e: e.get("event", "").startswith("no server answers yet"))
    assert daemon.http("GET", "/readyz")[0] == 200  # it has an active revision
    started = time.monotonic()
    with http_stub(lambda m, p, b: (200, b'{"version": 1}'), port=port):
        daemon.wait_for(lambda e: e.get("event") == "server serves the active revision", 60)
    assert time.monotonic() - started < 30
    assert _state(store)["confirmed"] is True


def test_something_squatting_the_servers_port_gets_nothing_refused(
    tmp_path: Path, bucket: Path
) -> None:
    """Issue 11 finding 14: while a stranger answers on the confirm port (the server is
    down), no pass activates anything and no revision is ever refused; once the real
    server is back, the new revision goes in."""
    store, port = tmp_path / "data" / "models", free_port()
    config = _config(tmp_path, store, bucket, f"http://127.0.0.1:{port}")
    config.write_text(config.read_text().replace('timeout = "20s"', 'timeout = "2s"'))
    with http_stub(lambda m, p, b: (200, json.dumps({"version": 1}).encode()), port=port):
        put_revision(bucket, 1, model_files(1))
        assert run_cli("sync", "--config", str(config)).returncode == 0
    put_revision(bucket, 2, model_files(2))
    with http_stub(lambda m, p, b: (200, b"<html>hello</html>"), port=port):
        for _ in range(3):
            assert run_cli("sync", "--config", str(config)).returncode == 1
    assert _state(store)["refused"] == {} and _state(store)["unknown"] == {}

    def server(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        version = int(p.rsplit("/", 1)[1])
        return 200, json.dumps({"version": version}).encode()

    with http_stub(server, port=port):
        out = run_cli("sync", "--config", str(config))
        assert out.returncode == 0, out.stderr
    assert (store / "ranker" / "current").resolve().name == "2"
