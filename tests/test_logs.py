"""Log lines (modelsync.logs): JSON for machines, console for people, no empty keys."""

from __future__ import annotations

import io
import json
from pathlib import Path

import structlog

from modelsync.logs import configure_logging
from tests.daemonproc import DaemonProcess
from tests.helpers import model_files, put_revision, sidecar_flags


def test_json_lines_carry_model_version_and_hide_secrets() -> None:
    """JSON events carry the model and version bound to them; credential-like keys are
    redacted."""
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = structlog.get_logger()
    log.info("hello", model="m")
    log.info("auth", admin_token="s3cret", version=3)
    log.debug("hidden")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["hello", "auth"]
    assert lines[0]["model"] == "m" and "version" not in lines[0]
    assert lines[1]["admin_token"] == "[redacted]"
    assert "s3cret" not in stream.getvalue()


def test_console_format_is_not_json() -> None:
    """Console output is for people: not JSON."""
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    structlog.get_logger().info("hello", model="m")
    assert "hello" in stream.getvalue()
    assert not stream.getvalue().lstrip().startswith("{")


def test_daemon_lines_carry_no_empty_keys(
    tmp_path: Path, bucket: Path, store: Path, procs: list[DaemonProcess]
) -> None:
    """The daemon's own events have no model=None or version=None; a model's name it."""
    put_revision(bucket, 1, model_files(1))
    daemon = DaemonProcess([*sidecar_flags(store, bucket), "--interval", "1h"], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_for(lambda e: e.get("event") == "committed")
    daemon.wait_for(lambda e: e.get("event") == "daemon started")
    assert daemon.stop() == 0
    events = daemon.events()
    assert all(None not in e.values() for e in events), events
    started = next(e for e in events if e["event"] == "daemon started")
    assert "model" not in started and "version" not in started
    assert next(e for e in events if e["event"] == "committed")["version"] == 1
