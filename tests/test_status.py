from __future__ import annotations

from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.config import load_config
from modelsync.status import collect_status
from modelsync.sync import Syncer
from modelsync.volume import Store
from tests.helpers import model_files, put_revision


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
