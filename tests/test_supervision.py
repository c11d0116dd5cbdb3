"""A model worker survives anything a pass throws, and a worker that ends anyway is
restarted: failures are injected through the daemon's source seam, in process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from modelsync.backends.file import LocalSource
from modelsync.cancel import CancelToken
from modelsync.config import Config, ModelConfig
from modelsync.daemon import Daemon
from modelsync.sdnotify import SystemdNotifier
from modelsync.sources import Source
from tests.daemonproc import DaemonProcess
from tests.helpers import free_port, model_files, put_revision


class FlakySource(LocalSource):
    """A file:// source whose listings raise ``fault`` while ``faults`` lasts."""

    def __init__(self, url: str, faults: list[BaseException]) -> None:
        super().__init__(url)
        self.faults = faults

    def list_versions(self, cancel: CancelToken | None = None) -> list[int]:
        if self.faults:
            raise self.faults.pop(0)
        return super().list_versions(cancel)


def _sample(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value(
        "modelsync_sync_total", {"model": "ranker", "outcome": outcome}
    )
    return value or 0.0


@pytest.fixture
def run_daemon(tmp_path: Path) -> Iterator[Callable[[Config, list[BaseException]], Daemon]]:
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(config: Config, faults: list[BaseException]) -> Daemon:
        def sources(url: str, _options: Mapping[str, Any]) -> Source:
            return FlakySource(url, faults)

        daemon = Daemon(
            lambda: config,
            config,
            registry=CollectorRegistry(),
            notifier=SystemdNotifier(),
            sources=sources,
        )
        thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False})
        thread.start()
        started.append((daemon, thread))
        return daemon

    yield start
    for daemon, thread in started:
        daemon.request_stop()
        thread.join(20)


def _config(tmp_path: Path, bucket: Path) -> Config:
    return Config(
        store=tmp_path / "data" / "models",
        interval=3600,
        admin={"listen": f"127.0.0.1:{free_port()}"},  # type: ignore[arg-type]
        models=(ModelConfig(name="ranker", source=f"file://{bucket}"),),
    )


def _wait(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_unexpected_exception_fails_one_pass_and_the_model_syncs_after(
    tmp_path: Path, bucket: Path, run_daemon: Callable[[Config, list[BaseException]], Daemon]
) -> None:
    """A RuntimeError out of the storage client: the pass is counted as failed (metrics,
    state), the worker lives, and the retry with backoff activates the revision."""
    put_revision(bucket, 1, model_files(1))
    daemon = run_daemon(_config(tmp_path, bucket), [RuntimeError("client bug")])
    registry = daemon.metrics_registry
    _wait(lambda: _sample(registry, "activated") == 1)
    assert _sample(registry, "failed") == 1
    slot = daemon.worker("ranker")
    assert slot is not None and slot.failures == 0
    assert daemon.alive()


def test_what_no_handler_catches_does_not_stop_the_model(
    tmp_path: Path, bucket: Path, run_daemon: Callable[[Config, list[BaseException]], Daemon]
) -> None:
    """Even SystemExit out of a pass (which no except Exception catches) leaves the model
    scheduled: its next pass activates the revision, and the daemon stays healthy."""
    put_revision(bucket, 1, model_files(1))
    daemon = run_daemon(_config(tmp_path, bucket), [SystemExit(3)])
    registry = daemon.metrics_registry
    _wait(lambda: _sample(registry, "activated") == 1, timeout=30)
    slot = daemon.worker("ranker")
    assert slot is not None and slot.passes >= 1
    assert daemon.alive()


def test_a_command_that_ignores_the_pass_deadline_is_stopped_and_healthz_stays_up(
    tmp_path: Path, bucket: Path, procs: list[DaemonProcess]
) -> None:
    """A notify command whose own timeout is longer than the pass deadline (and that
    would sleep past both) is stopped at the deadline (modelsync/children.py): the pass
    ends, the daemon stays healthy, and the command's process is gone."""
    import sys

    put_revision(bucket, 1, model_files(1))
    marker = tmp_path / "still-running"
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{tmp_path / "data" / "models"}"\npass_timeout = "2s"\n'
        f'[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
        f'[models.notify]\nmethod = "exec"\ntimeout = "60s"\n'
        f'command = ["{sys.executable}", "-c", '
        f"\"import time, pathlib; time.sleep(8); pathlib.Path('{marker}').touch()\"]\n"
    )
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_http()
    started = time.monotonic()
    daemon.wait_for(lambda e: e.get("event") in ("sync cancelled", "sync failed"), 15)
    assert time.monotonic() - started < 8, "the pass outlived its deadline"
    assert daemon.http("GET", "/healthz")[0] == 200
    time.sleep(7)
    assert not marker.exists(), "the command was not stopped at the pass deadline"
    assert daemon.http("GET", "/healthz")[0] == 200
