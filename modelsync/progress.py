"""Transfer progress a person can read: a bar on a terminal, a log line every few
seconds (and a gauge) in the daemon or a pipe; for downloads and for `publish`.

Both are ``ProgressFactory`` values for the Syncer: called with (model, version,
total bytes), they give a context manager whose value takes byte counts from the
download threads.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from prometheus_client import Gauge

__all__ = ["ByteTally", "LoggedProgress", "terminal_progress"]

MB = 1_000_000


class ByteTally:
    """Bytes done of a total, thread-safe, with the rate and time left."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self._clock = clock
        self._lock = threading.Lock()
        self._done = 0
        self.started = clock()

    def add(self, count: int) -> None:
        with self._lock:
            # A retried range re-sends bytes already counted: never past the total.
            self._done = min(self.total, self._done + count)

    @property
    def done(self) -> int:
        return self._done

    def rate(self) -> float:
        """Bytes per second so far."""
        elapsed = self._clock() - self.started
        return self._done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before anything arrived)."""
        rate = self.rate()
        return (self.total - self._done) / rate if rate > 0 else None

    def summary(self) -> str:
        eta = self.eta()
        left = f"{eta:.0f} s left" if eta is not None else "starting"
        return (
            f"{self._done / MB:,.0f}/{self.total / MB:,.0f} MB {self.rate() / MB:,.1f} MB/s {left}"
        )


@contextmanager
def terminal_progress(model: str, version: int, total: int) -> Iterator[Callable[[int], None]]:
    """A bar on stderr: percent, MB done of total, MB/s and time left."""
    import click

    tally = ByteTally(total)
    lock = threading.Lock()
    with click.progressbar(
        length=max(total, 1),
        label=f"{model} v{version}",
        file=sys.stderr,
        show_eta=False,
        show_percent=True,
        width=30,
        item_show_func=lambda text: text,
    ) as bar:

        def update(count: int) -> None:
            tally.add(count)
            with lock:
                bar.update(count, tally.summary())

        yield update


class LoggedProgress:
    """A "download progress" log line every ``interval`` seconds while a download runs
    (also when it stalls: the rate then says so), and ``gauge`` (the bytes done,
    labelled by model) present only while it runs."""

    def __init__(
        self, interval: float = 10.0, gauge: Gauge | None = None, event: str = "download progress"
    ) -> None:
        self.interval = interval
        self._gauge = gauge
        self._event = event

    @contextmanager
    def __call__(self, model: str, version: int, total: int) -> Iterator[Callable[[int], None]]:
        tally = ByteTally(total)
        log = structlog.get_logger().bind(model=model, version=version)
        stop = threading.Event()

        def report() -> None:
            while not stop.wait(self.interval):
                eta = tally.eta()
                log.info(
                    self._event,
                    bytes=tally.done,
                    total_bytes=total,
                    percent=round(100 * tally.done / max(total, 1), 1),
                    mb_per_s=round(tally.rate() / MB, 1),
                    eta_seconds=round(eta) if eta is not None else None,
                )

        if self._gauge is not None:
            self._gauge.labels(model).set_function(lambda: tally.done)
        reporter = threading.Thread(target=report, name=f"progress-{model}", daemon=True)
        reporter.start()
        try:
            yield tally.add
        finally:
            stop.set()
            reporter.join()
            if self._gauge is not None:
                self._gauge.remove(model)
