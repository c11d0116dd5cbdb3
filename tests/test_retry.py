from __future__ import annotations

import pytest
import structlog

from modelsync.cancel import CancelToken
from modelsync.errors import NotFoundError, TransientSourceError
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
