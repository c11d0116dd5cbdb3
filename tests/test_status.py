"""`modelsync status` and the report behind it (modelsync.status)."""

from __future__ import annotations

from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.config import load_config
from modelsync.status import collect_status
from modelsync.sync import Syncer
from modelsync.volume import Store
from tests.helpers import model_files, put_revision, run_cli, write_tree


def test_status_reports_active_retained_refused_and_age(store: Path, bucket: Path) -> None:
    """Status shows the active version, its age, retained and refused versions."""
    config = load_config(
        None, {"store": str(store), "model": "ranker", "source": f"file://{bucket}"}
    )
    st = Store(config.store, config.state_path)
    syncer = Syncer(st, wall_clock=lambda: 1_800_000_000.0)
    for version in (1, 2):
        put_revision(bucket, version, model_files(version))
        syncer.sync(config.models[0], CancelToken())
    put_revision(bucket, 3, model_files(3))
    (bucket / "3" / "saved_model.pb").write_bytes(b"bad")
    syncer.sync(config.models[0], CancelToken())
    syncer.close()
    report = collect_status(config, st, now=1_800_000_100.0)["models"][0]
    assert report["active_version"] == 2
    assert report["retained"] == [1]
    assert list(report["refused"]) == ["3"]
    assert report["activated_at"] == "2027-01-15T08:00:00Z"
    assert report["created"] == "2026-11-01T00:00:00Z"
    assert report["revision_age_seconds"] > 0
    assert "manifest says" in report["last_error"]


def test_stale_when_older_than_max_age(store: Path, bucket: Path) -> None:
    """A revision created longer ago than max_age is reported stale; a fresh one is not."""
    config = load_config(
        None, {"store": str(store), "model": "ranker", "source": f"file://{bucket}"}
    )
    model = config.models[0].model_copy(update={"max_age": 3600.0})
    config = config.model_copy(update={"models": (model,)})
    put_revision(bucket, 1, model_files(1))  # created 2026-11-01T00:00:00Z
    st = Store(config.store, config.state_path)
    Syncer(st).sync(model, CancelToken())
    created = 1_793_491_200.0  # 2026-11-01T00:00:00Z
    assert collect_status(config, st, now=created + 60)["models"][0]["stale"] is False
    assert collect_status(config, st, now=created + 7200)["models"][0]["stale"] is True


def test_status_shows_the_channel_and_why_this_host_is_not_on_it(tmp_path: Path) -> None:
    """status names the channel, the version it asks for, and the refusal keeping us off it."""
    url = f"file://{tmp_path}/bucket/ranker"
    for version, auc in ((1, 0.9), (2, 0.1)):
        src = write_tree(tmp_path / f"src{version}", model_files(version))
        done = run_cli(
            "publish", str(src), url, "--version", str(version), "--metric", f"auc={auc}"
        )
        assert done.returncode == 0, done.stderr
    config = tmp_path / "modelsync.toml"
    config.write_text(
        f'store = "{tmp_path}/store"\n[[models]]\nname = "ranker"\nsource = "{url}"\n'
        'channel = "prod"\ngate = { auc = 0.5 }\n'
    )

    def release(*args: str) -> None:
        done = run_cli("release", args[0], "ranker", *args[1:], "--config", str(config))
        assert done.returncode == 0, done.stderr

    release("promote", "--version", "1")
    assert run_cli("sync", "--config", str(config)).returncode == 0
    release("start", "2", "--percent", "100")
    run_cli("sync", "--config", str(config))
    out = run_cli("status", "--config", str(config))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ranker: active 1 ")
    assert (
        "  channel   prod asks for 2 (stable 1; canary 2 at 100 %, this host in its cohort)"
        in lines
    )
    refusal = next(line for line in lines if line.startswith("  not on it "))
    assert refusal.startswith("  not on it version 2 was refused here: ") and "auc" in refusal


def test_unix_time_versions_show_their_date(tmp_path: Path, bucket: Path, store: Path) -> None:
    """A version that looks like a Unix time is shown with its UTC date; a small one is not."""
    flags = ["--store", str(store), "--model", "ranker", "--source", f"file://{bucket}"]
    for version in ("7", "1700000300"):
        src = write_tree(tmp_path / f"src{version}", model_files(int(version)))
        assert (
            run_cli("publish", str(src), f"file://{bucket}", "--version", version).returncode == 0
        )
        assert run_cli("sync", *flags).returncode == 0
    out = run_cli("status", *flags)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ranker: active 1700000300 (2023-11-14 22:18 UTC) (activated ")
    assert "  retained  7" in lines
