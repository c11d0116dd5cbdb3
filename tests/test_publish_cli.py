"""`modelsync publish` as a user runs it (publish_cli.py): refusals in one line, exit
codes, nothing written where it refuses."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import model_files, publish_local, run_cli, snapshot, write_tree


def test_publish_refuses_to_overwrite(tmp_path: Path, bucket: Path) -> None:
    """Publishing an existing complete version exits 1 and changes nothing."""
    publish_local(tmp_path, bucket, 1)
    before = snapshot(bucket)
    src = write_tree(tmp_path / "other", model_files(9))
    out = run_cli("publish", str(src), f"file://{bucket}", "--version", "1")
    assert out.returncode == 1
    assert "already exists" in out.stderr
    assert snapshot(bucket) == before


def test_publish_to_a_path_says_the_url_to_write(tmp_path: Path) -> None:
    """publish to a relative path exits 2 naming the file:// URL meant; nothing written."""
    src = write_tree(tmp_path / "src", model_files(1))
    out = run_cli("publish", str(src), "bucket/ranker", cwd=tmp_path)
    assert out.returncode == 2
    assert "config error" not in out.stderr
    assert f"write file://{tmp_path}/bucket/ranker" in out.stderr
    assert not (tmp_path / "bucket").exists()


def test_bad_key_value_flags_exit_2_naming_the_flag(tmp_path: Path, bucket: Path) -> None:
    """A --metric that is not a number and a --meta without '=' each exit 2 in one
    line naming the flag and the pair, before anything is uploaded."""
    src = write_tree(tmp_path / "src", model_files(1))
    out = run_cli("publish", str(src), f"file://{bucket}", "--metric", "ndcg=high")
    assert out.returncode == 2
    assert "--metric" in out.stderr and "'ndcg=high': value is not a number" in out.stderr
    out = run_cli("publish", str(src), f"file://{bucket}", "--meta", "owner")
    assert out.returncode == 2
    assert "--meta" in out.stderr and "'owner' is not KEY=VALUE" in out.stderr
    assert list(bucket.iterdir()) == []
