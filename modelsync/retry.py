"""Retry policy for storage calls: exponential backoff with jitter, bounded twice.

Only errors that say they are worth retrying (``ModelsyncError.retryable``) are
retried; the wait is interruptible, so a stop request never sits out a backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
import tenacity

from modelsync.cancel import CancelToken
from modelsync.errors import ModelsyncError

__all__ = ["RetryPolicy", "call_with_retry"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries within ``total`` seconds, waiting ``initial`` to ``maximum``."""

    attempts: int = 6
    initial: float = 0.5
    maximum: float = 20.0
    total: float = 300.0


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ModelsyncError) and exc.retryable


class _Capped(tenacity.stop.stop_base):
    """Stop when the last error says fewer attempts are worth making than the policy's
    (errors.ModelsyncError.attempts: an answer that repeats is not waited out)."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        cap = exc.attempts if isinstance(exc, ModelsyncError) else None
        return cap is not None and retry_state.attempt_number >= cap


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    cancel: CancelToken,
    what: str,
    log: structlog.typing.FilteringBoundLogger,
) -> T:
    """Run ``fn``, retrying transient failures per ``policy``; re-raise the last error."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying",
            what=what,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 2),
            error=str(exc),
        )

    # The first attempt runs bare: building a tenacity loop for every one of a
    # thousand small files cost more than fetching some of them. Only a failure worth
    # retrying enters the loop, replayed there as its first attempt, so the attempts
    # and waits are exactly the policy's.
    try:
        return fn()
    except Exception as exc:
        if not _retryable(exc):
            raise
        failed: list[BaseException] = [exc]

    def attempt() -> T:
        if failed:
            raise failed.pop()
        return fn()

    retryer = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_retryable),
        stop=tenacity.stop_any(
            tenacity.stop_after_attempt(policy.attempts),
            tenacity.stop_after_delay(policy.total),
            _Capped(),
        ),
        wait=tenacity.wait_random_exponential(multiplier=policy.initial, max=policy.maximum),
        sleep=cancel.wait,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retryer(attempt)
