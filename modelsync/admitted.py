"""The ticket that lets a tree into the served directory: made by admission only.

``ModelStore.activate`` and ``ModelStore.resume`` — the only two calls that put a
revision where a server reads it — take an ``Admitted``, and only
``modelsync.sync.admit.admit`` holds the ticket that constructs one (a test checks
that no other module names it). So every road into ``<store>/<model>/`` — a new
download, a channel going back to a retained copy, a manual rollback, crash
recovery — passes the same checks at that moment, and a reader sees it from the
signatures alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ADMISSION_TICKET", "Admitted"]

ADMISSION_TICKET = object()


@dataclass(frozen=True)
class Admitted:
    """A tree that equalled its manifest exactly, authentic and not refused, when checked."""

    version: int
    tree: Path
    # sha256 of its manifest: journalled, so recovery admits this revision and no other.
    manifest_sha256: str
    # Which road it came by ("download", "retained copy", ...), for logs.
    road: str
    ticket: object = field(repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.ticket is not ADMISSION_TICKET:
            raise TypeError("an Admitted is made by modelsync.sync.admit.admit only")
