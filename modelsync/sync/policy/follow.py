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
from modelsync.errors import ChannelError, EmptySourceError
from modelsync.reports import ReportBook, failed_hosts
from modelsync.retry import RetryPolicy, call_with_retry
from modelsync.sources import Source
from modelsync.sources.control import Control, ControlStore, report_prefix
from modelsync.state import ChannelInfo
from modelsync.sync.context import PassContext
from modelsync.sync.policy import Choice
from modelsync.sync.policy.halt import RULES, Evidence, HaltRule, first_halt
from modelsync.sync.policy.named import named_choice
from modelsync.sync.policy.registry import Named
from modelsync.verdicts import LiveChecks

__all__ = ["ChannelView", "Follow", "Follower"]


@dataclass(frozen=True)
class ChannelView:
    channel: str
    pointer: Pointer
    target: Target
    failures: int  # hosts that reported the canary rolled back or refused
    # The halt rule that halted the canary and why (None: not halted).
    halt: tuple[str, str] | None = None


class Follower:
    """Shared by a daemon's passes (thread-safe); one per Syncer."""

    def __init__(
        self, identity: str, retry: RetryPolicy, rules: tuple[HaltRule, ...] | None = None
    ) -> None:
        self.identity = identity
        self._retry = retry
        self.rules = tuple(rules or RULES)
        # The canary's reports, read only for pointers with live-check rules; kept per
        # tag, so an idle pass re-reads none.
        self._reports = ReportBook()
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
        stable: int | None = None,
    ) -> ChannelView:
        """What the channel names for this host; ``stable`` (a registry alias's
        version) replaces the pointer's stable, after the pointer passed its checks."""
        pointer = self.pointer(channel, source, cancel, log, admit)
        if stable is not None and stable != pointer.stable:
            log.info(
                "the registry alias is the channel's stable",
                stable=stable,
                pointer_stable=pointer.stable,
            )
            pointer = pointer.model_copy(update={"stable": stable})
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
        halt = None
        if pointer.canary is not None:
            evidence = Evidence(
                dict.fromkeys(failed, ""), self._live(model, pointer, source, cancel)
            )
            halt = first_halt(pointer, evidence, self.rules)
        target = target_of(pointer, model, self.identity, active, halt is not None)
        return ChannelView(channel, pointer, target, len(failed), halt)

    def _live(
        self, model: str, pointer: Pointer, source: ControlStore, cancel: CancelToken
    ) -> dict[str, LiveChecks]:
        """The live checks the canary's hosts reported, when a rule reads them."""
        if pointer.halt_live is None or pointer.canary is None:
            return {}
        canary = pointer.canary
        tally = self._reports.tally(source, model, canary.version, cancel)
        return {
            r.identity: r.live
            for r in tally.reports
            if r.live is not None and r.canary == canary.nonce
        }

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


class Follow:
    """The policy of a model with ``channel``: the version its pointer names for this
    host, from a retained copy when this host served it before."""

    def __init__(self, follower: Follower) -> None:
        self._follower = follower

    def choose(self, ctx: PassContext, source: Source, active: int | None) -> Choice | None:
        version = self._target(ctx, source, active)
        return None if version is None else named_choice(ctx, source, version, "the channel")

    def _alias(self, ctx: PassContext, source: Source) -> int | None:
        """The version a registry source's alias names (the channel's stable: moving
        the alias is the release of stable); None for a bucket source."""
        if not isinstance(source, Named):
            return None
        version = call_with_retry(
            functools.partial(source.named_version, ctx.cancel),
            ctx.retry,
            ctx.cancel,
            f"{source.url}: resolve",
            ctx.log,
        )
        if version is None and not ctx.model.allow_empty:
            raise EmptySourceError(
                f"{source.url}: the registry names no ready version for the channel's "
                "stable; register one, or set allow_empty = true"
            )
        return version

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
            ctx.model.name,
            ctx.model.channel,
            source,
            active,
            ctx.cancel,
            ctx.log,
            admit,
            self._alias(ctx, source),
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
            halt_rule=view.halt[0] if view.halt else "",
            halt_reason=view.halt[1] if view.halt else "",
        )
        ctx.result.channel = info
        if ctx.state.channel != info or ctx.state.channel_marks != marks:  # saved on change only
            if info.halted and (ctx.state.channel is None or not ctx.state.channel.halted):
                ctx.log.error(
                    "canary halted",
                    canary=info.canary,
                    failed_reports=info.failures,
                    rule=info.halt_rule,
                    reason=info.halt_reason,
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
