"""A download progress bar for terminals (the daemon and pipes get log events instead)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

__all__ = ["terminal_progress"]


@contextmanager
def terminal_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A thread-safe byte counter drawn as a bar on stderr."""
    lock = threading.Lock()
    with click.progressbar(
        length=max(total, 1),
        label=label,
        file=sys.stderr,
        show_eta=True,
        show_percent=True,
        width=30,
    ) as bar:

        def update(count: int) -> None:
            with lock:
                bar.update(count)

        yield update
