from __future__ import annotations

import pytest
import structlog

from modelsync.cancel import CancelToken
from modelsync.errors import NotFoundError, OddAnswer, TransientSourceError
from modelsync.retry import RetryPolicy, call_with_retry

FAST = RetryPolicy(attempts=4, initial=0.001, maximum=0.01, total=5)


def test_transient_errors_are_retried_until_success() -> None:
    """Two transient failures then success: the value comes back after three calls."""
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientSourceError("503")
        return "ok"

    assert call_with_retry(flaky, FAST, CancelToken(), "t", structlog.get_logger()) == "ok"
    assert len(calls) == 3


def test_permanent_errors_are_not_retried_and_attempts_are_bounded() -> None:
    """A 404 fails at once; a transient error gives up after the attempt bound."""
    calls = []

    def missing() -> None:
        calls.append(1)
        raise NotFoundError("404")

    with pytest.raises(NotFoundError):
        call_with_retry(missing, FAST, CancelToken(), "t", structlog.get_logger())
    assert len(calls) == 1
    calls.clear()

    def always() -> None:
        calls.append(1)
        raise TransientSourceError("503")

    with pytest.raises(TransientSourceError):
        call_with_retry(always, FAST, CancelToken(), "t", structlog.get_logger())
    assert len(calls) == 4


def test_an_error_that_caps_its_attempts_is_tried_no_more_often() -> None:
    """An odd answer (errors.OddAnswer: attempts 2) is tried twice whatever the policy
    allows, and raised as itself; once it stops repeating, the call succeeds."""
    calls = []

    def odd() -> None:
        calls.append(1)
        raise OddAnswer("answered with Content-Encoding 'gzip' to a request for identity")

    with pytest.raises(OddAnswer):
        call_with_retry(odd, FAST, CancelToken(), "t", structlog.get_logger())
    assert len(calls) == 2 and FAST.attempts == 4
    calls.clear()

    def odd_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OddAnswer("answered 200 (the whole object) to a GET of bytes 0-9")
        return "ok"

    assert call_with_retry(odd_once, FAST, CancelToken(), "t", structlog.get_logger()) == "ok"
    assert len(calls) == 2
