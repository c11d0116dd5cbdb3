"""`modelsync verify` (verify_cli.py): damage, extra files and exit codes on a
published revision."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import publish_local, run_cli


def test_verify_reports_damage(tmp_path: Path, bucket: Path) -> None:
    """verify exits 1 naming the damaged file, 0 for an intact revision."""
    publish_local(tmp_path, bucket, 1)
    assert run_cli("verify", str(bucket / "1")).returncode == 0
    (bucket / "1" / "saved_model.pb").write_bytes(b"x")
    out = run_cli("verify", str(bucket / "1"))
    assert out.returncode == 1
    assert "saved_model.pb" in out.stderr


def test_verify_separates_damage_from_extra_files(tmp_path: Path, bucket: Path) -> None:
    """Extra regular files (a server's caches) are listed, exit 0 (1 with --strict);
    a FIFO in a revision is damage, exit 1 (issue 11 finding 26)."""
    import os

    publish_local(tmp_path, bucket, 1)
    cache = bucket / "1" / "__pycache__"
    cache.mkdir()
    (cache / "model.cpython-311.pyc").write_bytes(b"compiled")
    out = run_cli("verify", str(bucket / "1"))
    assert out.returncode == 0 and "__pycache__/model.cpython-311.pyc" in out.stderr
    assert run_cli("verify", "--strict", str(bucket / "1")).returncode == 1
    os.mkfifo(bucket / "1" / "pipe")
    out = run_cli("verify", str(bucket / "1"))
    assert out.returncode == 1 and "pipe: not a regular file" in out.stderr
