"""One daemon per store (modelsync.daemonlock), with real `modelsync run` processes."""

from __future__ import annotations

from pathlib import Path

from modelsync.config import default_state_dir
from tests.daemonproc import DaemonProcess
from tests.helpers import free_port, model_files, put_revision, run_cli, sidecar_flags


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
