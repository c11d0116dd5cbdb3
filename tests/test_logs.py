from __future__ import annotations

import io
import json

import structlog

from modelsync.logs import configure_logging


def test_json_lines_carry_model_version_and_hide_secrets() -> None:
    """Every JSON event has model and version keys; credential-like keys are redacted."""
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = structlog.get_logger()
    log.info("hello", model="m")
    log.info("auth", admin_token="s3cret", version=3)
    log.debug("hidden")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["hello", "auth"]
    assert lines[0]["model"] == "m" and lines[0]["version"] is None
    assert lines[1]["admin_token"] == "[redacted]"
    assert "s3cret" not in stream.getvalue()


def test_console_format_is_not_json() -> None:
    """Console output is for people: not JSON."""
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    structlog.get_logger().info("hello", model="m")
    assert "hello" in stream.getvalue()
    assert not stream.getvalue().lstrip().startswith("{")
