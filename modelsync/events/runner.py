"""One thread per event source: long-poll, hand what came to the hub, delete it, and
on failure back off and retry while the poll covers the gap."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from modelsync.cancel import CancelToken
from modelsync.events.hub import EventHub
from modelsync.events.match import ObjectEvent
from modelsync.events.source import Delivery, EventSource, EventSourceError
from modelsync.transport.deadline import bounded

__all__ = ["MAX_MESSAGE_BYTES", "SourceRunner"]

# Larger messages are not a notification (SQS allows 256 KiB, a Storage Queue 64 KiB;
# a notification is a few KiB): counted as malformed and deleted, never parsed.
MAX_MESSAGE_BYTES = 256 * 1024
# A failing source is retried after 1 s, 2 s, 4 s ... at most this.
_BACKOFF_CAP = 60.0


class SourceRunner:
    """Reads ``source`` on its own thread until ``stop``."""

    def __init__(
        self,
        name: str,
        source: EventSource,
        parse: Callable[[bytes], list[ObjectEvent]],
        models: tuple[str, ...],
        hub: EventHub,
    ) -> None:
        self.name = name
        self._source = source
        self._parse = parse
        self._models = models
        self._hub = hub
        self._stop = threading.Event()
        # A daemon thread: a long poll in flight must not hold the process at exit.
        self._thread = threading.Thread(target=self._run, name=f"events-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def halt(self) -> None:
        """Ask the thread to stop reading (``stop`` then waits for it)."""
        self._stop.set()

    def stop(self, grace: float, until: CancelToken) -> None:
        """Stop reading; wait up to ``grace`` for a long poll in flight, then clean up
        what the source created (a per-host queue) either way, until ``until`` fires.

        The clean-up is network calls (unsubscribe, delete the queue) with the SDK's
        own timeouts, 30 s a read: a stalled endpoint held SIGTERM for a minute. What
        does not fit is logged and skipped; docs/push.md says how to sweep it."""
        self._stop.set()
        left = until.remaining()
        self._thread.join(grace if left is None else min(grace, left))
        try:
            bounded(self._source.stop, until)
        except Exception as exc:  # Cancelled at the deadline, or the SDK's own errors
            structlog.get_logger().warning(
                "event source clean-up skipped", source=self.name, reason=str(exc)[:200]
            )

    def close(self) -> None:
        """Release a source that was never started (a reload refused)."""
        self._source.stop()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            if not self._stop.is_set():
                # Only a BaseException gets here: say so rather than look up for good.
                self._hub.source_failed(self.name, "its reader thread ended; polling covers")

    def _loop(self) -> None:
        started = False
        while not self._stop.is_set():
            try:
                if not started:
                    self._source.start()
                    started = True
                batch = self._source.receive()
                self._hub.source_up(self.name)
                if batch and not self._stop.is_set():
                    self._deliver(batch)
                if batch:
                    self._source.ack(batch)
            except Exception as exc:
                if self._stop.is_set():
                    return  # the source was closed under a read in flight: not a failure
                # EventSourceError is the expected case; anything else is a bug of ours
                # or the SDK's, and one read's bug must not end the source for good.
                reason = str(exc) if isinstance(exc, EventSourceError) else _one_line(exc)
                failures = self._hub.source_failed(self.name, reason)
                self._stop.wait(min(_BACKOFF_CAP, 2.0 ** (failures - 1)))

    def _deliver(self, batch: list[Delivery]) -> None:
        try:
            self._hub.deliver(self.name, self._read(batch), self._models)
        except Exception as exc:
            # What the batch made the hub raise: malformed, and deleted like it, or the
            # same messages would come back and fail again for good.
            self._hub.malformed(self.name, _one_line(exc))

    def _read(self, batch: list[Delivery]) -> list[ObjectEvent]:
        events: list[ObjectEvent] = []
        for delivery in batch:
            body = delivery.body
            if len(body) > MAX_MESSAGE_BYTES:
                self._hub.malformed(self.name, f"{len(body)} bytes, over {MAX_MESSAGE_BYTES}")
                continue
            try:
                events.extend(self._parse(body))
            except ValueError as exc:
                self._hub.malformed(self.name, str(exc)[:200])
            except Exception as exc:
                # Whatever a message can make a parser raise (RecursionError for JSON
                # nested past the parser's depth) is a malformed message, not our end.
                self._hub.malformed(self.name, _one_line(exc))
        return events


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:200]
