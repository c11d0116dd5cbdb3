"""A file swapped for a link to a secret and back, as fast as a thread can: the race
that a check-then-open reader loses (used by tests/test_hostile.py and the campaign)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["swapping_with_link"]


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
