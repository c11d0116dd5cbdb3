"""The channel policy: what a model's release channel names for this host.

An idle pass costs one conditional GET of the pointer (a "not modified" when nothing
changed; the pointer read last is kept per source and channel) and, while a canary
is set, one listing of its reports, whose failure markers are counted without
reading any report (modelsync.reports). The version directory listing that a model
without a channel pays each pass is not needed.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from modelsync.cancel import CancelToken
from modelsync.channel import MAX_POINTER_BYTES, Pointer, Target, channel_key, target_of
from modelsync.channel_trust import trusted_pointer
from modelsync.errors import ChannelError, RefusedError
from modelsync.reports import failed_hosts
from modelsync.retry import RetryPolicy, call_with_retry
from modelsync.sources import Source
from modelsync.sources.control import Control, ControlStore, report_prefix
from modelsync.state import ChannelInfo
from modelsync.sync.context import PassContext
from modelsync.sync.policy import Choice
from modelsync.sync.policy.candidate import read_candidate
from modelsync.sync.policy.halt import FailedHosts, HaltRule

__all__ = ["ChannelView", "Follow", "Follower", "named_choice"]


@dataclass(frozen=True)
class ChannelView:
    channel: str
    pointer: Pointer
    target: Target
    failures: int  # hosts that reported the canary rolled back or refused


class Follower:
    """Shared by a daemon's passes (thread-safe); one per Syncer."""

    def __init__(self, identity: str, retry: RetryPolicy, halt: HaltRule | None = None) -> None:
        self.identity = identity
        self._retry = retry
        self.halt = halt or FailedHosts()
        self._lock = threading.Lock()
        self._pointers: dict[tuple[str, str], tuple[str, bytes]] = {}

    def view(
        self,
        model: str,
        channel: str,
        source: ControlStore,
        active: int | None,
        cancel: CancelToken,
        log: structlog.typing.FilteringBoundLogger,
        admit: Callable[[bytes, str], Pointer] = Pointer.parse,
    ) -> ChannelView:
        pointer = self.pointer(channel, source, cancel, log, admit)
        failed: set[str] = set()
        if pointer.canary is not None:
            version = pointer.canary.version
            listed = call_with_retry(
                functools.partial(source.list_control, report_prefix(version), cancel),
                self._retry,
                cancel,
                f"{source.url}/{report_prefix(version)}: list",
                log,
            )
            failed = failed_hosts(listed, version, pointer.canary.nonce)
        halted = pointer.canary is not None and self.halt.halted(pointer, failed)
        target = target_of(pointer, model, self.identity, active, halted)
        return ChannelView(channel, pointer, target, len(failed))

    def pointer(
        self,
        channel: str,
        source: ControlStore,
        cancel: CancelToken,
        log: structlog.typing.FilteringBoundLogger,
        admit: Callable[[bytes, str], Pointer] = Pointer.parse,
    ) -> Pointer:
        key = channel_key(channel)
        where = f"{source.url}/{key}"
        with self._lock:
            known = self._pointers.get((source.url, channel))
        got = call_with_retry(
            functools.partial(
                source.get_control, key, MAX_POINTER_BYTES, known[0] if known else None, cancel
            ),
            self._retry,
            cancel,
            where,
            log,
        )
        if got is None:
            raise ChannelError(
                f"{where}: channel pointer does not exist "
                f"(create it with `modelsync release start` or `promote --version`)"
            )
        if not isinstance(got, Control):
            assert known is not None
            return admit(known[1], where)  # checked again: an unchanged pointer expires too
        pointer = admit(got.data, where)
        with self._lock:
            self._pointers[(source.url, channel)] = (got.tag, got.data)
        return pointer


def named_choice(ctx: PassContext, source: Source, version: int, namer: str) -> Choice | None:
    """The choice of ``version``, which ``namer`` (a channel, a registry) named: from a
    retained copy when this host served it before, else checked in the bucket."""
    retained = ctx.ms.path_of(version)
    if retained is not None:
        # Back to a revision this host served before (a halted canary, an alias moved
        # back): tried from the local copy first; admission decides whether it may be.
        return Choice(version, None, retained)
    try:
        candidate = read_candidate(ctx, source, version)
    except RefusedError as exc:
        ctx.refuse(version, str(exc), exc.metrics)
        return None
    if candidate is None:
        ctx.log.warning(
            "the version named has no manifest (incomplete or missing)",
            version=version,
            named_by=namer,
        )
        return None
    return Choice(version, candidate)


class Follow:
    """The policy of a model with ``channel``: the version its pointer names for this
    host, from a retained copy when this host served it before."""

    def __init__(self, follower: Follower) -> None:
        self._follower = follower

    def choose(self, ctx: PassContext, source: Source, active: int | None) -> Choice | None:
        version = self._target(ctx, source, active)
        return None if version is None else named_choice(ctx, source, version, "the channel")

    def _target(self, ctx: PassContext, source: Source, active: int | None) -> int | None:
        """The version the channel names for this host, when it should change; records
        what the channel said in the pass's result and the model's state."""
        assert ctx.model.channel is not None
        marks = dict(ctx.state.channel_marks)
        admit = functools.partial(
            trusted_pointer,
            model=ctx.model.name,
            channel=ctx.model.channel,
            verify=ctx.model.verify,
            state=ctx.state,
            now=ctx.wall(),
        )
        view = self._follower.view(
            ctx.model.name, ctx.model.channel, source, active, ctx.cancel, ctx.log, admit
        )
        pointer, target = view.pointer, view.target
        info = ChannelInfo(
            channel=view.channel,
            stable=pointer.stable,
            canary=pointer.canary.version if pointer.canary else None,
            percent=pointer.canary.percent if pointer.canary else None,
            in_cohort=target.in_cohort,
            halted=target.halted,
            target=target.version,
            failures=view.failures,
            nonce=pointer.canary.nonce if pointer.canary else "",
            seq=pointer.seq,
        )
        ctx.result.channel = info
        if ctx.state.channel != info or ctx.state.channel_marks != marks:  # saved on change only
            if info.halted and (ctx.state.channel is None or not ctx.state.channel.halted):
                ctx.log.error(
                    "canary halted: hosts rolled it back",
                    canary=info.canary,
                    failed_reports=info.failures,
                    rule=self._follower.halt.name,
                    on_halt=pointer.on_halt,
                )
            ctx.log.info("channel", **vars(info), why=target.reason)
            ctx.state.channel = info
            ctx.ms.save_state(ctx.state)
        version = target.version
        if version is None or version == active:
            return None
        if version in ctx.state.refused:
            ctx.log.debug("the channel names a version refused here", version=version)
            return None
        return version
