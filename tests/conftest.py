from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelsync.logs import configure_logging
from tests.backends import AzureBackend, GcsBackend, NetworkBackend, S3Backend
from tests.daemonproc import DaemonProcess
from tests.faultproxy import FaultProxy
from tests.gcs_emulator import start as start_emulator
from tests.mlflowserver import Registry

SERVER_FIGURES = pytest.StashKey[dict[str, dict[str, object]]]()

# The run's last line counts the skipped tests and says why.
pytest_plugins = ["tests.skipsummary"]


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


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """A real GCS JSON-API server (gcp-storage-emulator) on a free loopback port."""
    os.environ["DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"] = "true"
    from tests.emulators import stop

    proc, url = start_emulator()
    yield url
    stop(proc)


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


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's S3 API server on a free loopback port; its endpoint URL."""
    from tests.backends import S3_ENV
    from tests.emulators import start_moto, stop

    os.environ.update(S3_ENV)
    proc, url = start_moto()
    yield url
    stop(proc)


@pytest.fixture
def s3_backend(moto_server: str) -> S3Backend:
    """A fresh, empty bucket on moto, holding model 'ranker' under models/."""
    return S3Backend(moto_server, "b-" + uuid.uuid4().hex[:12]).create()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's Blob service on a free loopback port; its endpoint URL."""
    from tests.emulators import start_azurite, stop

    proc, url = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield url
    stop(proc)


@pytest.fixture
def az_backend(azurite: str) -> AzureBackend:
    """A fresh, empty container on Azurite, holding model 'ranker' under models/."""
    return AzureBackend(azurite, "c-" + uuid.uuid4().hex[:12]).create()


@pytest.fixture(params=["gs", "s3", "az"])
def network_backend(request: pytest.FixtureRequest) -> NetworkBackend:
    """Each network backend in turn, on its real API server."""
    if request.param == "gs":
        return GcsBackend(
            request.getfixturevalue("gcs_emulator"), request.getfixturevalue("gcs_bucket")
        )
    backend: NetworkBackend = request.getfixturevalue(f"{request.param}_backend")
    return backend


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


@pytest.fixture(scope="session")
def server_figures(request: pytest.FixtureRequest) -> dict[str, dict[str, object]]:
    """Swap, rollback and restart times and request counts per real server; printed at
    the end of the run (the figures the servers suite reports)."""
    figures: dict[str, dict[str, object]] = {}
    request.config.stash[SERVER_FIGURES] = figures
    return figures


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures = terminalreporter.config.stash.get(SERVER_FIGURES, None)
    if not figures:
        return
    terminalreporter.section("real servers")
    terminalreporter.write_line(
        f"{'server':<20} {'swap s':>7} {'rollback s':>10} {'restart s':>9} "
        f"{'requests':>9} {'failed':>6}"
    )
    for name, row in sorted(figures.items()):
        if "bake_latency_rollback_s" in row:
            continue  # the bake's own line, below
        # Smoke rows: rollback s runs from "activated" to "rolled back" in the sync's log;
        # they restart no server ("-").
        restart = row.get("restart_to_serving_s")
        terminalreporter.write_line(
            f"{name:<20} {row.get('swap_s', 0):>7.2f} {row.get('rollback_s', 0):>10.2f} "
            f"{'-' if restart is None else f'{restart:.2f}':>9} {row.get('requests', 0):>9} "
            f"{row.get('failed_requests', 0):>6}"
        )
        if row.get("reason"):
            terminalreporter.write_line(f"{'':<20} refused: {row['reason']}")
    for name, row in sorted(figures.items()):
        if "bake_latency_rollback_s" in row:  # tests/test_servers_bake.py
            terminalreporter.write_line(
                f"{name}: activation to rollback {row.get('bake_error_rollback_s', '-')} s "
                f"(20 % failing), {row['bake_latency_rollback_s']} s (3x slower); client: "
                f"{row['client_ok']} answered, {row['v4_own_failures']} failed by v4 itself, "
                f"{row['other_failures']} other failures"
            )


@pytest.fixture(scope="session")
def mlflow_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real `mlflow server` (sqlite store) on loopback; `make mlflow` installs it."""
    from tests.emulators import stop
    from tests.mlflowserver import MLFLOW_BIN, start_mlflow

    if not MLFLOW_BIN.exists():
        pytest.skip(f"{MLFLOW_BIN} is missing: run `make mlflow` (.ci/run does)")
    proc, url = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield Registry(url)
    stop(proc)
