"""The real command line in child processes: exit codes, bytes on disk, one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    check_invariants,
    model_files,
    publish_local,
    run_cli,
    sidecar_flags,
    snapshot,
)


def test_three_revision_history_through_the_cli(tmp_path: Path, bucket: Path, store: Path) -> None:
    """publish → sync three times: bytes on disk, exit codes, retention, status."""
    flags = sidecar_flags(store, bucket)
    for version in (1, 2, 3):
        assert publish_local(tmp_path, bucket, version, "--metric", "ndcg@10=0.4") == str(version)
        out = run_cli("sync", *flags)
        assert out.returncode == 0, out.stderr
        for name, data in model_files(version).items():
            assert (store / "ranker" / "current" / name).read_bytes() == data
        assert check_invariants(store, "ranker").violations == []
    again = run_cli("sync", *flags)
    assert again.returncode == 0
    status = run_cli("status", "--json", *flags)
    report = json.loads(status.stdout)["models"][0]
    assert report["active_version"] == 3
    assert report["retained"] == [2]
    assert report["refused"] == {}
    verify = run_cli("verify", str(store / "ranker" / "3"))
    assert verify.returncode == 0 and "intact" in verify.stdout


def test_sync_logs_json_lines_naming_model_and_version(
    tmp_path: Path, bucket: Path, store: Path
) -> None:
    """Off a terminal every log line is JSON carrying model and version."""
    publish_local(tmp_path, bucket, 1)
    out = run_cli("sync", *sidecar_flags(store, bucket))
    events = [json.loads(line) for line in out.stderr.splitlines()]
    assert {e["event"] for e in events} >= {"downloading", "activated", "committed"}
    assert all(e["model"] == "ranker" and e["version"] == 1 for e in events)


def test_environment_configures_a_sidecar(tmp_path: Path, bucket: Path, store: Path) -> None:
    """MODELSYNC_* variables alone configure one model."""
    publish_local(tmp_path, bucket, 1)
    out = run_cli(
        "sync",
        env={
            "MODELSYNC_STORE": str(store),
            "MODELSYNC_MODEL": "ranker",
            "MODELSYNC_SOURCE": f"file://{bucket}",
        },
    )
    assert out.returncode == 0, out.stderr
    assert (store / "ranker" / "current" / "saved_model.pb").read_bytes() == b"graph-1"


def test_failed_sync_exits_1_and_keeps_store(tmp_path: Path, bucket: Path, store: Path) -> None:
    """A corrupt revision makes sync exit 1 with the store byte-identical."""
    flags = sidecar_flags(store, bucket)
    publish_local(tmp_path, bucket, 1)
    assert run_cli("sync", *flags).returncode == 0
    before = snapshot(store / "ranker")
    publish_local(tmp_path, bucket, 2)
    (bucket / "2" / "saved_model.pb").write_bytes(b"tampered")
    out = run_cli("sync", *flags)
    assert out.returncode == 1
    assert snapshot(store / "ranker") == before
    status = json.loads(run_cli("status", "--json", *flags).stdout)["models"][0]
    assert "2" in status["refused"]


def test_require_fails_without_any_version(tmp_path: Path, bucket: Path, store: Path) -> None:
    """--require exits 1 when a model has nothing to serve (init containers); an
    empty source is an error even without it (a typo'd prefix looks the same)."""
    flags = sidecar_flags(store, bucket)
    plain = run_cli("sync", *flags)
    assert plain.returncode == 1 and "no revisions there" in plain.stderr
    out = run_cli("sync", "--require", *flags)
    assert out.returncode == 1
    assert "no active version" in out.stderr


BAD_CONFIGS = {
    "unknown key": (
        'store = "{store}"\nfoo = 1\n[[models]]\nname = "m"\nsource = "file:///b"\n',
        "foo: unknown key",
    ),
    "wrong type": (
        'store = "{store}"\n[[models]]\nname = "m"\nsource = "file:///b"\nkeep = "x"\n',
        "models[0].keep",
    ),
    "missing source": ('store = "{store}"\n[[models]]\nname = "m"\n', "models[0].source"),
    "bad scheme": (
        'store = "{store}"\n[[models]]\nname = "m"\nsource = "ftp://x/m"\n',
        "unsupported source URL",
    ),
    "not toml": ("store = \n", "invalid TOML"),
    "one [models] table": (
        'store = "{store}"\n[models]\nname = "m"\nsource = "file:///b"\n',
        "models: [models] is one table; write [[models]] (two brackets)",
    ),
    "misspelt key": (
        'store = "{store}"\n[[models]]\nname = "m"\nsorce = "file:///b"\n',
        "models[0].sorce: unknown key; did you mean 'source'?",
    ),
    "misspelt method key": (
        'store = "{store}"\n[[models]]\nname = "m"\nsource = "file:///b"\n'
        '[models.notify]\nmethod = "signal"\nsignall = "SIGHUP"\n',
        "signall: unknown key; did you mean 'signal'?",
    ),
    "source without scheme": (
        'store = "{store}"\n[[models]]\nname = "m"\nsource = "/srv/bucket/m"\n',
        "'/srv/bucket/m' is not a URL: for a local directory write file:///srv/bucket/m",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_with_one_line(tmp_path: Path, store: Path, case: str) -> None:
    """A bad config exits 2 with one line naming the file and key; nothing is written."""
    text, expected = BAD_CONFIGS[case]
    config = tmp_path / "modelsync.toml"
    config.write_text(text.format(store=store))
    for command in ("sync", "status"):
        out = run_cli(command, "--config", str(config))
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert str(config) in lines[0] and expected in lines[0]
    assert not store.exists()


def test_missing_config_file_and_usage_errors_exit_2(tmp_path: Path) -> None:
    """A config path that does not exist, or a bad flag, exits 2."""
    out = run_cli("sync", "--config", str(tmp_path / "none.toml"))
    assert out.returncode == 2 and "cannot read config file" in out.stderr
    assert run_cli("sync", "--no-such-flag").returncode == 2
    assert (
        run_cli(
            "sync", "--store", "/x", "--model", "m", "--source", "file:///b", "--keep", "many"
        ).returncode
        == 2
    )
    out = run_cli("publish", str(tmp_path), "file:///b/m", "--metric", "auc")
    assert out.returncode == 2 and "KEY=VALUE" in out.stderr


def test_global_options_may_follow_the_command(tmp_path: Path, bucket: Path, store: Path) -> None:
    """--log-format and --log-level are accepted after the command as before it."""
    publish_local(tmp_path, bucket, 1)
    out = run_cli("sync", *sidecar_flags(store, bucket), "--log-format", "console")
    assert out.returncode == 0, out.stderr
    assert "activated" in out.stderr and not out.stderr.lstrip().startswith("{")
    out = run_cli("run", "--log-format=json", "--log-level", "debug", "--config", "/nonexistent")
    assert out.returncode == 2
    assert "No such option" not in out.stderr and "cannot read config file" in out.stderr


def test_sync_without_configuration_names_config_and_flags(tmp_path: Path) -> None:
    """sync with no configuration at all points at --config and MODELSYNC_CONFIG."""
    out = run_cli("sync", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == (
        "modelsync: config error: no configuration: give --config FILE (or "
        "MODELSYNC_CONFIG=FILE), or --store, --model and --source (MODELSYNC_STORE, "
        "MODELSYNC_MODEL, MODELSYNC_SOURCE) for one model\n"
    )


def test_rollback_and_unpin_help_lists_no_model_flags() -> None:
    """rollback/unpin take the model as MODEL: their help offers no --model or --keep."""
    for command in ("rollback", "unpin"):
        out = run_cli(command, "--help")
        assert out.returncode == 0
        assert f"Usage: modelsync {command} [OPTIONS] MODEL" in out.stdout
        assert "--model" not in out.stdout and "--keep" not in out.stdout
        assert "--source TEXT  " in out.stdout or "--source TEXT " in out.stdout


def test_rollback_without_a_file_names_the_model_once(
    tmp_path: Path, bucket: Path, store: Path
) -> None:
    """A sidecar without a file rolls back with MODEL, --store and --source, and unpins."""
    for version in (1, 2):
        publish_local(tmp_path, bucket, version)
        assert run_cli("sync", *sidecar_flags(store, bucket)).returncode == 0
    flags = ["--store", str(store), "--source", f"file://{bucket}"]
    out = run_cli("rollback", "ranker", *flags)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ranker: serving version 1; pinned")
    out = run_cli("unpin", "ranker", *flags)
    assert out.returncode == 0 and out.stdout == "ranker: unpinned from version 1\n"


def test_sync_runs_its_pass_with_start_up_frozen(tmp_path: Path, bucket: Path, store: Path) -> None:
    """`sync` freezes what start-up built before the pass, so a full collection during
    a download walks only what the pass makes, not every module and validator."""
    publish_local(tmp_path, bucket, 1)
    # Observed, not changed: the pass is wrapped to read the freeze count as it starts.
    code = (
        "import gc, sys\n"
        "import modelsync.sync\n"
        "real = modelsync.sync.Syncer.sync\n"
        "def sync(self, *args, **kwargs):\n"
        "    print('frozen at pass', gc.get_freeze_count(), file=sys.stderr)\n"
        "    return real(self, *args, **kwargs)\n"
        "modelsync.sync.Syncer.sync = sync\n"
        "from modelsync.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "sync", *sidecar_flags(store, bucket)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    frozen = re.search(r"^frozen at pass (\d+)$", result.stderr, re.M)
    assert frozen is not None, result.stderr
    assert int(frozen[1]) > 10_000
    assert (store / "ranker" / "1").is_dir()
