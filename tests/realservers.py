"""Harness for the real-server suite (pytest -m servers): the servers' own processes
on loopback, a client that keeps calling them, and the story every preset must pass.

Each server lives in its own virtual environment under MODELSYNC_SERVERS_DIR
(default <repo>/.venv-servers), made by `make servers`; a missing one fails the
suite rather than skipping it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelsync.config import default_state_dir
from modelsync.manifest import parse_version
from tests.helpers import REPO, free_port, run_cli

SERVERS_DIR = Path(os.environ.get("MODELSYNC_SERVERS_DIR", REPO / ".venv-servers"))
RECIPES = REPO / "examples" / "servers"

__all__ = [
    "Client",
    "ServerProcess",
    "Setup",
    "Story",
    "free_port",
    "http_json",
    "post_json",
    "recipe",
    "run_smoke_story",
    "server_python",
    "setup",
    "smoke_doc",
]


def server_python(name: str) -> Path:
    """The interpreter of the virtual environment holding server ``name``."""
    python = SERVERS_DIR / name / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{name} is not installed under {SERVERS_DIR}: run `make servers`")
    return python


def http_json(method: str, url: str, doc: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """One JSON request; (status, decoded body or text)."""
    data = json.dumps(doc).encode() if doc is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, body = int(exc.code), exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def post_json(url: str, doc: Any) -> Any:
    """The JSON answer of a POST that must succeed (a client's request)."""
    status, answer = http_json("POST", url, doc)
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {answer}")
    return answer


@dataclass(frozen=True)
class Setup:
    """Where one story runs: the served tree, the bucket, the server's port, the config."""

    store: Path
    bucket: Path
    port: int
    config: Path


def setup(
    server: str, model: str, tmp: Path, default_url: str, extra: dict[str, str] | None = None
) -> Setup:
    """The recipe of ``server`` pointed at a store, a file:// bucket and a free port."""
    store, bucket, port = tmp / "data" / "models", tmp / "bucket" / model, free_port()
    replace = {
        '"/data/models"': f'"{store}"',
        f'"gs://my-bucket/models/{model}"': f'"file://{bucket}"',
        f'"{default_url}"': f'"http://127.0.0.1:{port}"',
        **(extra or {}),
    }
    return Setup(store, bucket, port, recipe(server, tmp, replace))


def recipe(server: str, tmp: Path, replace: dict[str, str], name: str = "modelsync.toml") -> Path:
    """The documented recipe examples/servers/<server>/<name>, with each ``replace`` key
    (which must occur in it) swapped for its value; written under ``tmp``."""
    text = (RECIPES / server / name).read_text()
    for old, new in replace.items():
        assert old in text, f"{server}/{name} no longer contains {old!r}"
        text = text.replace(old, new)
    path = tmp / f"{server}.toml"
    path.write_text(text)
    return path


class ServerProcess:
    """A server started from argv, up once ``health`` answers 200."""

    def __init__(
        self,
        argv: list[str],
        health: str,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv, self.health, self.log_path = argv, health, log
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.argv[0]} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if http_json("GET", self.health, timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.25)
        pytest.fail(f"{self.argv[0]} did not come up within {timeout}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class Client(threading.Thread):
    """Calls ``predict`` in a loop; counts answers and failures, records what it saw."""

    def __init__(self, predict: Callable[[], float]) -> None:
        super().__init__(daemon=True)
        self.predict = predict
        self.halt = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.seen: list[float] = []

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                value = self.predict()
            except Exception as exc:  # every kind of failure is what we count
                self.failures.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            self.ok += 1
            if not self.seen or self.seen[-1] != value:
                self.seen.append(value)

    def finish(self) -> Client:
        self.halt.set()
        self.join(30)
        return self


@dataclass
class Story:
    """v1 synced before the server exists, confirmed once it does; v2 swapped and a
    broken v3 rolled back under a client's load; then a server restart on the store.

    ``revision(version, k, broken)`` builds a revision directory whose model answers
    ``k``; ``server()`` builds a (not yet started) ServerProcess; ``predict()`` asks
    the running server and returns the model's answer.
    """

    name: str
    model: str
    at: Setup
    revision: Callable[[int, float, bool], Path]
    server: Callable[[], ServerProcess]
    predict: Callable[[], float]
    # Words of the server's own error that the refusal reason must carry.
    reason_words: str
    # Entries besides version directories the server may find in <store>/<model>.
    model_files: tuple[str, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.at.config

    @property
    def store(self) -> Path:
        return self.at.store

    @property
    def bucket(self) -> Path:
        return self.at.bucket

    def publish(
        self, version: int, k: float, broken: bool = False, smoke: dict[str, Any] | None = None
    ) -> None:
        src = self.revision(version, k, broken)
        extra: list[str] = []
        if smoke is not None:
            smoke_file = src.parent / f"smoke-{version}.json"
            smoke_file.write_text(json.dumps(smoke))
            extra = ["--smoke", str(smoke_file)]
        out = run_cli(
            "publish", str(src), f"file://{self.bucket}", "--version", str(version), *extra
        )
        assert out.returncode == 0, out.stderr

    def sync(self, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        out = run_cli("sync", "--config", str(self.config), *extra, timeout=600)
        return out, time.monotonic() - started

    def status(self) -> dict[str, Any]:
        out = run_cli("status", "--json", "--config", str(self.config))
        assert out.returncode == 0, out.stderr
        report: dict[str, Any] = json.loads(out.stdout)["models"][0]
        return report

    def check_scannable(self) -> None:
        """The served tree holds model directories only, and in each only version
        directories plus the model-level files the server reads: no state, no link."""
        assert sorted(os.listdir(self.store)) == [self.model], os.listdir(self.store)
        for entry in os.listdir(self.store / self.model):
            path = self.store / self.model / entry
            if entry in self.model_files:
                assert path.is_file() and not path.is_symlink(), entry
                continue
            assert parse_version(entry) is not None and path.is_dir(), entry
            assert not path.is_symlink(), entry
        assert default_state_dir(self.store).is_dir()

    def wait_for_answer(self, value: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = self.predict()
                if last == value:
                    return
            except Exception as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: the server never answered {value}; last: {last!r}")

    def run(self) -> dict[str, Any]:
        figures = self.figures
        # The init container: no server yet. The first revision stands, unconfirmed.
        self.publish(1, 1.0)
        out, _ = self.sync("--require")
        assert out.returncode == 0, out.stderr
        assert (self.status()["active_version"], self.status()["confirmed"]) == (1, False)
        self.check_scannable()

        server = self.server().start()
        try:
            out, _ = self.sync()
            assert out.returncode == 0, out.stderr
            assert self.status()["confirmed"] is True
            self.wait_for_answer(1.0)

            client = Client(self.predict)
            client.start()
            try:
                self.publish(2, 2.0)
                out, figures["swap_s"] = self.sync()
                assert out.returncode == 0, out.stderr
                self.wait_for_answer(2.0)

                self.publish(3, 3.0, broken=True)
                out, figures["rollback_s"] = self.sync()
                assert out.returncode == 1, out.stderr
                # Fast: on the server's word, far inside the 2-minute confirm timeout.
                assert figures["rollback_s"] < 30, figures
                status = self.status()
                assert status["active_version"] == 2
                assert self.reason_words in status["refused"]["3"], status["refused"]
                time.sleep(1.0)  # keep the client on the restored revision a moment
                assert self.predict() == 2.0
            finally:
                client.finish()
            figures["requests"] = client.ok + len(client.failures)
            figures["failed_requests"] = len(client.failures)
            assert client.failures == [], client.failures[:5]
            assert client.seen and set(client.seen) <= {1.0, 2.0}, client.seen
            self.check_scannable()

            # A restart of the server on the store it shares with modelsync.
            server.stop()
            started = time.monotonic()
            server = self.server().start()
            out, _ = self.sync()
            assert out.returncode == 0, out.stderr
            self.wait_for_answer(2.0)
            figures["restart_to_serving_s"] = time.monotonic() - started
            assert self.status()["confirmed"] is True
            self.check_scannable()
        finally:
            server.stop()
        return figures


def smoke_doc(body: dict[str, Any], expected: float) -> dict[str, Any]:
    """A smoke file: one V2 request whose first output must be ``expected`` (± 0.01)."""
    expect = {"outputs": [{"data": [expected]}]}
    request = {"name": "zero", "body": body, "expect": expect, "tolerance": 0.01}
    return {"format": 1, "requests": [request]}


def _log_time(stderr: str, event: str) -> float:
    """When the sync's JSON log line ``event`` was written (seconds since the epoch)."""
    from datetime import datetime

    for line in stderr.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == event:
            return datetime.fromisoformat(str(doc["timestamp"])).timestamp()
    raise AssertionError(f"no {event!r} in the sync's log:\n{stderr[-3000:]}")


def run_smoke_story(story: Story, body: dict[str, Any]) -> dict[str, Any]:
    """Under a client's load: v2 good (its smoke passes), v3 that loads but answers 30
    where its smoke file expects 3 (rolled back within seconds, the difference in the
    reason), v5 good. Returns the figures; the client must see no failed request."""
    figures: dict[str, Any] = {}
    story.publish(1, 1.0)  # before the server: the repository it starts on
    out, _ = story.sync()
    assert out.returncode == 0, out.stderr
    server = story.server().start()
    try:
        out, _ = story.sync()
        assert out.returncode == 0, out.stderr
        story.wait_for_answer(1.0)
        client = Client(story.predict)
        client.start()
        try:
            story.publish(2, 2.0, smoke=smoke_doc(body, 2.0))
            out, figures["swap_s"] = story.sync()
            assert out.returncode == 0, out.stderr
            passed = {"verdict": "passed", "requests": 1, "reason": ""}
            assert _live(story.status(), 2) == {"smoke": passed}
            story.wait_for_answer(2.0)

            story.publish(3, 30.0, smoke=smoke_doc(body, 3.0))
            out, figures["sync_s"] = story.sync()
            assert out.returncode == 1, out.stderr
            activated = _log_time(out.stderr, "activated")
            figures["rollback_s"] = _log_time(out.stderr, "rolled back") - activated
            assert figures["rollback_s"] < 10, figures
            status = story.status()
            assert status["active_version"] == 2
            reason = status["refused"]["3"]
            assert "smoke requests failed" in reason and "expected 3.0 ± 0.01" in reason, reason
            assert "= 30.0" in reason, reason
            story.wait_for_answer(2.0)

            story.publish(5, 5.0, smoke=smoke_doc(body, 5.0))
            out, _ = story.sync()
            assert out.returncode == 0, out.stderr
            assert story.status()["active_version"] == 5
            story.wait_for_answer(5.0)
        finally:
            client.finish()
        figures["requests"] = client.ok + len(client.failures)
        figures["failed_requests"] = len(client.failures)
        figures["reason"] = reason
        assert client.failures == [], client.failures[:5]
        # v3 answered between its load and the rollback: that is what smoke catches.
        assert client.seen and set(client.seen) <= {1.0, 2.0, 30.0, 5.0}, client.seen
        story.check_scannable()
    finally:
        server.stop()
    return figures


def _live(status: dict[str, Any], version: int) -> Any:
    return next(r["live"] for r in status["revisions"] if r["version"] == version)
