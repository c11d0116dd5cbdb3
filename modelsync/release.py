"""`modelsync release`: change a channel's pointer, and see how a rollout is going.

Every change reads the pointer, changes it, and writes it back only if nobody wrote
it in between (the store's conditional write on the tag read: a GCS generation, an
S3 or Azure ETag; create-only when there was none). Two operators therefore cannot
lose each other's change: the second gets a one-line error and runs the command
again. gcp-storage-emulator ignores preconditions (real GCS keeps them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelsync.cancel import CancelToken
from modelsync.channel import MAX_POINTER_BYTES, Canary, Pointer, channel_key, in_cohort
from modelsync.errors import ChannelError, PublishConflict
from modelsync.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES
from modelsync.reports import FAILED_OUTCOMES, ReportBook, Tally
from modelsync.sources import Source
from modelsync.sources.control import Control

__all__ = ["Release", "RolloutStatus"]

Change = Callable[[Pointer | None], Pointer]


@dataclass(frozen=True)
class RolloutStatus:
    pointer: Pointer
    version: int | None  # the version counted: the canary's, else the stable one
    tally: Tally | None
    # Hosts known to the channel (they reported on the stable or the canary version)
    # that should serve ``version`` and have not reported on it.
    not_reported: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        reports = self.tally.reports if self.tally else ()
        return {
            "pointer": self.pointer.model_dump(),
            "version": self.version,
            "confirmed": sorted(r.identity for r in reports if r.outcome == "confirmed"),
            "failed": {
                r.identity: f"{r.outcome}: {r.reason}"
                for r in sorted(reports, key=lambda r: r.identity)
                if r.outcome in FAILED_OUTCOMES
            },
            "not_reported": list(self.not_reported),
            "unreadable_reports": self.tally.ignored if self.tally else 0,
        }


class Release:
    """One model's channel in one source."""

    def __init__(
        self,
        source: Source,
        model: str,
        channel: str,
        who: str,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.source, self.model, self.channel, self.who = source, model, channel, who
        self._wall = wall
        self._cancel = CancelToken(deadline=time.monotonic() + 300)

    @property
    def where(self) -> str:
        return f"{self.source.url}/{channel_key(self.channel)}"

    def read(self) -> tuple[Pointer | None, str]:
        """The pointer and its tag ("" when there is none)."""
        got = self.source.get_control(
            channel_key(self.channel), MAX_POINTER_BYTES, None, self._cancel
        )
        if not isinstance(got, Control):
            return None, ""
        return Pointer.parse(got.data, self.where), got.tag

    def _update(self, change: Change) -> Pointer:
        pointer, tag = self.read()
        new = change(pointer).model_copy(
            update={"updated_by": self.who, "updated_at": self._wall()}
        )
        try:
            self.source.put_control(channel_key(self.channel), new.to_bytes(), match=tag)
        except PublishConflict:
            raise ChannelError(
                f"{self.where}: changed by someone else since it was read; nothing was "
                "written: look at `modelsync release status` and run the command again"
            ) from None
        return new

    def _check_version(self, version: int) -> None:
        raw = self.source.read_object(version, MANIFEST_NAME, MAX_MANIFEST_BYTES, self._cancel)
        if raw is None:
            raise ChannelError(
                f"{self.source.url}/{version}: no such complete version (no {MANIFEST_NAME})"
            )

    # -- the commands ------------------------------------------------------------------

    def start(
        self, version: int, percent: float, halt_after: int | None, on_halt: str | None
    ) -> Pointer:
        self._check_version(version)

        def change(pointer: Pointer | None) -> Pointer:
            pointer = pointer or Pointer()
            if pointer.canary is not None and pointer.canary.version != version:
                raise ChannelError(
                    f"{self.where}: canary {pointer.canary.version} is in progress: "
                    "promote or abort it first"
                )
            if pointer.stable == version:
                raise ChannelError(f"{self.where}: {version} is already the stable version")
            update: dict[str, Any] = {"canary": Canary(version=version, percent=percent)}
            if halt_after is not None:
                update["halt_after"] = halt_after
            if on_halt is not None:
                update["on_halt"] = on_halt
            return _validated(pointer.model_copy(update=update), self.where)

        return self._update(change)

    def set_percent(self, percent: float) -> Pointer:
        def change(pointer: Pointer | None) -> Pointer:
            if pointer is None or pointer.canary is None:
                raise ChannelError(f"{self.where}: no canary in progress (release start)")
            canary = Canary(version=pointer.canary.version, percent=percent)
            return pointer.model_copy(update={"canary": canary})

        return self._update(change)

    def promote(self, version: int | None = None) -> Pointer:
        if version is not None:
            self._check_version(version)

        def change(pointer: Pointer | None) -> Pointer:
            pointer = pointer or Pointer()
            target = version
            if target is None:
                if pointer.canary is None:
                    raise ChannelError(
                        f"{self.where}: no canary to promote (or name one with --version)"
                    )
                target = pointer.canary.version
            return pointer.model_copy(update={"stable": target, "canary": None})

        return self._update(change)

    def abort(self) -> Pointer:
        def change(pointer: Pointer | None) -> Pointer:
            if pointer is None or pointer.canary is None:
                raise ChannelError(f"{self.where}: no canary in progress")
            return pointer.model_copy(update={"canary": None})

        return self._update(change)

    def status(self) -> RolloutStatus:
        pointer, _ = self.read()
        if pointer is None:
            raise ChannelError(f"{self.where}: channel pointer does not exist")
        book = ReportBook()
        version = pointer.canary.version if pointer.canary else pointer.stable
        if version is None:
            return RolloutStatus(pointer, None, None, ())
        tally = book.tally(self.source, self.model, version, self._cancel)
        known = {r.identity for r in tally.reports}
        if pointer.stable is not None and pointer.stable != version:
            stable = book.tally(self.source, self.model, pointer.stable, self._cancel)
            known |= {r.identity for r in stable.reports}
        reported = {r.identity for r in tally.reports}
        canary = pointer.canary
        expected = sorted(
            host
            for host in known - reported
            if canary is None or in_cohort(self.model, canary, host)
        )
        return RolloutStatus(pointer, version, tally, tuple(expected))


def _validated(pointer: Pointer, where: str) -> Pointer:
    return Pointer.parse(pointer.to_bytes(), where)
