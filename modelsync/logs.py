"""Logging setup: structlog, JSON lines for machines, console lines for people.

This is the one place that touches structlog's global configuration; tests may
call ``configure_logging`` again to reset it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging"]

_SECRET_KEYS = ("token", "password", "secret", "credential", "authorization", "private_key")


def _drop_empty(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # An event about one model names it (and its version) by binding them; a key bound
    # to nothing (the daemon's own events: model=None version=None) says nothing.
    for key in [k for k, v in event.items() if v is None]:
        del event[key]
    return event


def _redact(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Defence in depth: no code path logs a credential, and none can by accident.
    for key in list(event):
        if any(secret in key.lower() for secret in _SECRET_KEYS):
            event[key] = "[redacted]"
    return event


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Send events to ``stream`` (stderr) as JSON lines, or as console lines on a terminal."""
    out = stream if stream is not None else sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_empty,
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Storage SDKs log through the standard library; with no handler configured its
    # last resort prints their warnings as raw multi-line text on stderr (azure.identity
    # prints a paragraph per failed credential). modelsync reports every storage
    # failure itself, in one line, so only their errors may pass.
    for name in ("azure", "botocore", "boto3", "urllib3", "google"):
        logging.getLogger(name).setLevel(logging.ERROR)
