"""The seam every event source fills (sqs.py, azqueue.py): a queue read by long polling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from modelsync.errors import ModelsyncError

__all__ = ["Delivery", "EventSource", "EventSourceError"]


class EventSourceError(ModelsyncError):
    """The queue could not be reached, created, read or cleaned (the poll covers)."""


@dataclass(frozen=True)
class Delivery:
    """One queue message: its bytes, and what deleting it takes."""

    body: bytes
    receipt: str


class EventSource(Protocol):
    def start(self) -> None:
        """Make the queue ready (create and subscribe a per-host queue when configured);
        raises EventSourceError."""
        ...

    def receive(self) -> list[Delivery]:
        """Wait up to the source's long-poll time for messages; [] when none came.
        Raises EventSourceError."""
        ...

    def ack(self, deliveries: list[Delivery]) -> None:
        """Delete ``deliveries`` from the queue; raises EventSourceError."""
        ...

    def stop(self) -> None:
        """Delete what ``start`` created; never raises (the host is going away)."""
        ...
