from __future__ import annotations

import threading
import time
from pathlib import Path

from modelsync.watch import Debouncer, Watcher


def test_debouncer_fires_once_after_a_burst() -> None:
    """Ten pokes in quick succession make one call."""
    calls: list[float] = []
    debouncer = Debouncer(0.2, lambda: calls.append(time.monotonic()))
    for _ in range(10):
        debouncer.poke()
        time.sleep(0.01)
    time.sleep(0.5)
    assert len(calls) == 1


def test_config_watch_sees_rename_and_configmap_swap(tmp_path: Path) -> None:
    """An atomic rename over the file and a ..data symlink swap both trigger a reload."""
    fired = threading.Event()
    config = tmp_path / "modelsync.toml"
    config.write_text("a")
    (tmp_path / "unrelated").write_text("x")
    watcher = Watcher()
    watcher.start()
    try:
        watcher.watch_config(config, fired.set, delay=0.05)
        (tmp_path / "unrelated").write_text("y")
        assert not fired.wait(0.5)
        tmp = tmp_path / ".tmp"
        tmp.write_text("b")
        tmp.rename(config)
        assert fired.wait(5)
        fired.clear()
        (tmp_path / "..2026").mkdir()
        link = tmp_path / "..data_tmp"
        link.symlink_to("..2026")
        link.rename(tmp_path / "..data")
        assert fired.wait(5)
    finally:
        watcher.stop()


def test_tree_watch_sees_new_versions(tmp_path: Path) -> None:
    """A file written anywhere under a source triggers the callback; missing roots are skipped."""
    fired = threading.Event()
    watcher = Watcher()
    watcher.start()
    try:
        watcher.watch_tree("m", tmp_path, fired.set, delay=0.05)
        watcher.watch_tree("missing", tmp_path / "nope", fired.set)
        (tmp_path / "7").mkdir()
        (tmp_path / "7" / "f").write_text("x")
        assert fired.wait(5)
        watcher.unwatch("m")
    finally:
        watcher.stop()
