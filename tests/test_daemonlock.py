"""One daemon per store (modelsync.daemonlock), with real `modelsync run` processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from modelsync.config import default_state_dir
from tests.daemonproc import DaemonProcess
from tests.helpers import (
    bind_unix_socket,
    free_port,
    model_files,
    put_revision,
    run_cli,
    sidecar_flags,
)


def test_a_second_daemon_on_one_store_refuses_naming_the_first(
    tmp_path: Path, bucket: Path, store: Path, procs: list[DaemonProcess]
) -> None:
    """The second `run` exits 1 with one line naming the first's pid; after it, one starts."""
    put_revision(bucket, 1, model_files(1))
    flags = [*sidecar_flags(store, bucket), "--interval", "1h"]
    first = DaemonProcess(flags, tmp_path / "first.log")
    procs.append(first)
    first.wait_for(lambda e: e.get("event") == "daemon started")
    second = run_cli("run", *flags, "--listen", f"127.0.0.1:{free_port()}", timeout=60)
    assert second.returncode == 1
    assert second.stderr.splitlines()[-1] == (
        f"modelsync: error: another modelsync daemon (pid {first.pid}) already runs on store "
        f"{store} (it holds {default_state_dir(store)}/locks/daemon.lock); stop it first, or "
        "give this one its own store"
    )
    assert first.proc.poll() is None
    assert first.stop() == 0
    third = DaemonProcess(flags, tmp_path / "third.log")
    procs.append(third)
    third.wait_for(lambda e: e.get("event") == "daemon started")


@pytest.mark.parametrize(
    ("plant", "says"),
    [
        (lambda p: os.mkfifo(p), "not a regular file (a FIFO); not opened"),
        (lambda p: p.mkdir(), "not a regular file (a directory); not opened"),
        (bind_unix_socket, "not a regular file (a socket); not opened"),
        (lambda p: os.symlink(p.parent / "elsewhere", p), "is a symbolic link; not followed"),
    ],
    ids=["fifo", "directory", "socket", "link"],
)
def test_a_planted_daemon_lock_stops_the_start_in_one_line(
    bucket: Path, store: Path, plant: object, says: str
) -> None:
    """Something else than a regular file at <state>/locks/daemon.lock: `run` exits 1
    at once with one line naming the path and what is there (a FIFO neither blocks
    the start nor ends in a traceback), and nothing is created where a link points."""
    put_revision(bucket, 1, model_files(1))
    flags = [*sidecar_flags(store, bucket), "--interval", "1h"]
    lock = default_state_dir(store) / "locks" / "daemon.lock"
    lock.parent.mkdir(parents=True)
    plant(lock)  # type: ignore[operator]
    started = time.monotonic()
    done = run_cli("run", *flags, "--listen", f"127.0.0.1:{free_port()}", timeout=60)
    assert time.monotonic() - started < 20
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == f"modelsync: error: {lock}: {says}"
    assert not (lock.parent / "elsewhere").exists()
