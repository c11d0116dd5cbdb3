"""File-system change events (watchdog): the config file, and file:// sources.

Events only wake the daemon (debounced); polling remains the source of truth, so
a missed event delays a pass until the next interval and loses nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

__all__ = ["MAX_SOURCE_WATCHES", "Debouncer", "Watcher"]

# watchdog runs a thread per watched tree: past this many file:// sources, the rest
# are polled only (events only make a pass come sooner; polling finds everything).
MAX_SOURCE_WATCHES = 32


class Debouncer:
    """Calls ``callback`` once, ``delay`` seconds after the last of a burst of pokes."""

    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self._delay = delay
        self._callback = callback
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def poke(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self._delay, self._callback)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class _Handler(FileSystemEventHandler):
    def __init__(self, matches: Callable[[str], bool], debouncer: Debouncer) -> None:
        self._matches = matches
        self._debouncer = debouncer

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
        if any(p and self._matches(p) for p in paths):
            self._debouncer.poke()


class Watcher:
    """One watchdog observer for every watch the daemon holds."""

    def __init__(self) -> None:
        self._observer = Observer()
        self._observer.daemon = True
        self._debouncers: list[Debouncer] = []
        self._watches: dict[str, object] = {}
        self._capped = False
        self._log = structlog.get_logger()

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        for debouncer in self._debouncers:
            debouncer.cancel()
        self._observer.stop()
        self._observer.join(timeout=5)

    def watch_config(self, path: Path, on_change: Callable[[], None], delay: float = 0.5) -> None:
        """Call ``on_change`` when ``path`` changes, including Kubernetes ConfigMap updates
        (which swap a ``..data`` symlink in the same directory instead of writing the file)."""
        name = path.name
        directory = path.parent.resolve()

        def matches(changed: str) -> bool:
            base = Path(changed).name
            return base in (name, "..data") or changed.startswith(str(directory / "..data"))

        debouncer = Debouncer(delay, on_change)
        self._debouncers.append(debouncer)
        self._observer.schedule(_Handler(matches, debouncer), str(directory), recursive=False)

    def watch_tree(
        self, key: str, root: Path, on_change: Callable[[], None], delay: float = 1.0
    ) -> None:
        """Call ``on_change`` after changes anywhere under ``root`` (a file:// source)."""
        if len(self._watches) >= MAX_SOURCE_WATCHES and key not in self._watches:
            if not self._capped:
                self._capped = True
                self._log.info(
                    "more file:// sources than watches; the others are polled only",
                    watches=MAX_SOURCE_WATCHES,
                )
            return
        if key in self._watches or not root.is_dir():
            if not root.is_dir():
                self._log.warning("source directory missing; polling only", path=str(root))
            return
        debouncer = Debouncer(delay, on_change)
        self._debouncers.append(debouncer)
        self._watches[key] = self._observer.schedule(
            _Handler(lambda _p: True, debouncer), str(root), recursive=True
        )

    def unwatch(self, key: str) -> None:
        watch = self._watches.pop(key, None)
        if watch is not None:
            self._observer.unschedule(watch)  # type: ignore[arg-type]
