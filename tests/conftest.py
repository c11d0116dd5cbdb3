from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelsync.logs import configure_logging
from tests.daemonproc import DaemonProcess
from tests.faultproxy import FaultProxy
from tests.helpers import REPO


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[io.StringIO]:
    """Each test starts with logging reset to an in-memory JSON stream."""
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    yield stream


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    """A local bucket directory holding one model, 'ranker'."""
    path = tmp_path / "bucket" / "ranker"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """A real GCS JSON-API server (gcp-storage-emulator) on a free loopback port."""
    os.environ["DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"] = "true"
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.gcs_emulator", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("gcp-storage-emulator did not start") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def gcs_bucket(gcs_emulator: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty bucket on the emulator; yields its name."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_emulator},
    )
    name = "b-" + uuid.uuid4().hex[:12]
    client.create_bucket(name)
    client.close()
    yield name


@pytest.fixture
def procs() -> Iterator[list[DaemonProcess]]:
    """Daemon child processes started by a test; stopped at its end."""
    started: list[DaemonProcess] = []
    yield started
    for proc in started:
        proc.stop()


@pytest.fixture
def fault_proxy(gcs_emulator: str) -> Iterator[FaultProxy]:
    """A fault-injecting, request-counting proxy in front of the emulator (no faults yet)."""
    proxy = FaultProxy(int(gcs_emulator.rsplit(":", 1)[1])).start()
    yield proxy
    proxy.stop()
