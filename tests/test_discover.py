from __future__ import annotations

import json
from pathlib import Path

import structlog

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.discover import Discovery
from modelsync.retry import RetryPolicy
from modelsync.sources import open_source
from tests.helpers import manifest_doc, model_files, put_revision


def _discover(
    bucket: Path, active: int | None, refused: set[int], **model: object
) -> tuple[int | None, dict[int, str]]:
    seen: dict[int, str] = {}
    discovery = Discovery(RetryPolicy(), lambda: 4e9, seen.__setitem__, structlog.get_logger())
    config = ModelConfig(name="ranker", source=f"file://{bucket}", **model)  # type: ignore[arg-type]
    found = discovery.newest(config, open_source(config.source), active, refused, CancelToken())
    return (found.version if found else None), seen


def test_newest_complete_newer_than_active(bucket: Path) -> None:
    """Skips incomplete and refused versions; stops at the active one."""
    for version in (3, 5, 7):
        put_revision(bucket, version, model_files(version))
    put_revision(bucket, 9, model_files(9), manifest=False)
    assert _discover(bucket, None, set()) == (7, {})
    assert _discover(bucket, None, {7}) == (5, {})
    assert _discover(bucket, 7, set()) == (None, {})
    assert _discover(bucket, 5, {7}) == (None, {})


def test_invalid_candidates_are_reported_and_passed_over(bucket: Path) -> None:
    """A bad manifest or a gate miss is reported through refuse() and the next one is used."""
    put_revision(bucket, 1, model_files(1))
    put_revision(bucket, 2, model_files(2))
    (bucket / "2" / "modelsync-manifest.json").write_text("{")
    doc = manifest_doc(model_files(3), version=3)
    doc["metrics"] = {"auc": 0.5}
    put_revision(bucket, 3, model_files(3), manifest=False)
    (bucket / "3" / "modelsync-manifest.json").write_text(json.dumps(doc))
    found, refused = _discover(bucket, None, set(), gate={"auc": 0.9})
    assert found is None
    assert sorted(refused) == [1, 2, 3]
    assert "missing" in refused[1] and "not valid JSON" in refused[2]
    assert "below 0.9" in refused[3]
    assert _discover(bucket, None, {2, 3}) == (1, {})
