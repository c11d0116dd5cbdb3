"""What a one-shot `sync` and `status` tell the operator (issue 22 points 1, 2, 4), as a
new user sees it: real `modelsync` processes, exit codes and text."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import free_port, model_files, put_revision, run_cli


def _config(tmp_path: Path, bucket: Path, extra: str = "") -> Path:
    path = tmp_path / "modelsync.toml"
    path.write_text(
        f'store = "{tmp_path}/data/models"\n[[models]]\nname = "ranker"\n'
        f'source = "file://{bucket}"\n{extra}'
    )
    return path


def test_an_empty_source_is_an_error_naming_the_url(tmp_path: Path) -> None:
    """A typo'd or empty prefix on an existing bucket: exit 1 with the URL, and `status`
    says why; with allow_empty it is the expected wait (exit 0)."""
    bucket = tmp_path / "bucket" / "rankr"
    bucket.mkdir(parents=True)
    config = _config(tmp_path, bucket)
    run = run_cli("sync", "--config", str(config))
    assert run.returncode == 1, run.stderr
    assert f"file://{bucket}: no revisions there" in run.stderr
    status = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)
    assert "no revisions there" in status["models"][0]["last_error"]
    allowed = _config(tmp_path, bucket, "allow_empty = true\n")
    assert run_cli("sync", "--config", str(allowed)).returncode == 0


def test_a_revision_waiting_for_an_unreachable_server_is_not_up_to_date(tmp_path: Path) -> None:
    """The server does not answer while a newer revision exists: `sync` exits 1 with
    "version N waits: server unreachable since …" and `status` shows it; the first
    revision with no server yet (an init container) still exits 0."""
    bucket = tmp_path / "bucket" / "ranker"
    port = free_port()  # nothing listens there
    config = _config(
        tmp_path,
        bucket,
        f'[models.confirm]\nmethod = "http"\nurl = "http://127.0.0.1:{port}/v/{{version}}"\n'
        'timeout = "2s"\n',
    )
    put_revision(bucket, 1, model_files(1))
    first = run_cli("sync", "--config", str(config))
    assert first.returncode == 0, first.stderr
    put_revision(bucket, 2, model_files(2))
    run = run_cli("sync", "--config", str(config))
    assert run.returncode == 1, run.stderr
    assert "version 2 waits: server unreachable since" in run.stderr
    status = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)
    model = status["models"][0]
    assert model["active_version"] == 1
    assert model["waiting"]["version"] == 2 and "unreachable" in model["waiting"]["reason"]
    text = run_cli("status", "--config", str(config)).stdout
    assert "  waiting   2 since " in text and "connection refused" in text


def test_no_confirmation_is_claimed_when_nobody_confirms(tmp_path: Path) -> None:
    """A model with no notify and no confirm: nothing logs confirmed=true."""
    bucket = tmp_path / "bucket" / "ranker"
    put_revision(bucket, 1, model_files(1))
    run = run_cli("sync", "--log-format", "json", "--config", str(_config(tmp_path, bucket)))
    assert run.returncode == 0, run.stderr
    committed = [
        json.loads(line)
        for line in run.stderr.splitlines()
        if line.startswith("{") and '"committed"' in line
    ]
    assert committed and committed[0]["confirmed"] is False
    assert committed[0]["server_asked"] is False
