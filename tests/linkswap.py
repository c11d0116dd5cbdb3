"""A file swapped for a link to a secret and back, as fast as a thread can, while
modelsync's file:// source reads it: the race a check-then-open reader loses (used by
tests/test_hostile.py and the reliability campaign)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelsync.backends.file import LocalSource
from modelsync.cancel import CancelToken
from modelsync.errors import NotFoundError, RefusedError
from modelsync.sources.base import Sink

__all__ = ["RaceCounts", "raced_reads", "swapping_with_link"]

_CONTENT = b"w" * 4096


@contextmanager
def swapping_with_link(real: Path, secret: Path, content: bytes) -> Iterator[None]:
    """While inside, ``real`` keeps turning into a link to ``secret`` and back into a
    regular file holding ``content``; each swap is one rename."""
    halt = threading.Event()
    link, plain = real.with_name(".swap-link"), real.with_name(".swap-plain")

    def swapper() -> None:
        while not halt.is_set():
            link.unlink(missing_ok=True)
            link.symlink_to(secret)
            link.replace(real)
            plain.write_bytes(content)
            plain.replace(real)

    thread = threading.Thread(target=swapper, name="link-swapper", daemon=True)
    thread.start()
    try:
        yield
    finally:
        halt.set()
        thread.join(5)


@dataclass
class RaceCounts:
    served: int = 0  # the file's own bytes were read
    refused: int = 0  # the read met the link and was refused
    wrong: int = 0  # anything else was read: the secret (must stay 0)


def raced_reads(root: Path, attempts: int) -> RaceCounts:
    """Fetch a revision's file ``attempts`` times through a LocalSource while it is
    swapped with a link to a secret under ``root``; count what each read got."""
    secret = root / "secret"
    revision = root / "bucket" / "ranker" / "1"
    revision.mkdir(parents=True)
    secret.write_bytes(b"S" * len(_CONTENT))
    real = revision / "weights.bin"
    real.write_bytes(_CONTENT)
    source = LocalSource(f"file://{revision.parent}")
    counts = RaceCounts()
    with swapping_with_link(real, secret, _CONTENT):
        for attempt in range(attempts):
            dest = root / f"out-{attempt}"
            sink = Sink(dest, len(_CONTENT), "weights.bin", None)
            try:
                source.fetch(1, "weights.bin", sink, CancelToken())
                sink.finish()
            except (RefusedError, NotFoundError):
                sink.close()
                counts.refused += 1
                continue
            if dest.read_bytes() == _CONTENT:
                counts.served += 1
            else:
                counts.wrong += 1
    return counts
