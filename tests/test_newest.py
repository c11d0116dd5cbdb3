"""The newest policy (modelsync.sync.policy.newest), on a file:// bucket."""

from __future__ import annotations

import json
import time
from pathlib import Path

import structlog

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.outcome import Outcome, PassResult
from modelsync.retry import RetryPolicy
from modelsync.sources import open_source
from modelsync.sync.context import PassContext
from modelsync.sync.policy.newest import Newest
from modelsync.volume import Store
from tests.helpers import manifest_doc, model_files, put_revision


def _discover(
    bucket: Path, active: int | None, refused: set[int], **model: object
) -> tuple[int | None, dict[int, str]]:
    config = ModelConfig(name="ranker", source=f"file://{bucket}", **model)  # type: ignore[arg-type]
    root = bucket.parent.parent / f"store-{time.monotonic_ns()}"
    store = Store(root / "models", root / "state")
    store.prepare()
    ms = store.model(config.name, config.layout)
    state = ms.load_state()
    state.refused = dict.fromkeys(refused, "before")
    ctx = PassContext(
        config,
        ms,
        state,
        CancelToken(),
        PassResult(config.name, Outcome.FAILED, None),
        structlog.get_logger(),
        lambda: 4e9,
        RetryPolicy(),
    )
    found = Newest().choose(ctx, open_source(config.source), active)
    seen = {v: r for v, r in state.refused.items() if v not in refused}
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
    """A bad manifest or a gate miss is refused through the context and the next one used."""
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


def test_a_producer_keeping_old_times_is_not_taken_mid_copy(tmp_path: Path) -> None:
    """Issue 11 finding 9: files copied with their old modification times (cp -p) while
    modelsync looks: the marker and times say settled, but the listing still changes,
    so nothing is activated; once the copy is over, the whole revision is."""
    import os
    import threading
    import time

    from modelsync.cancel import CancelToken
    from modelsync.config import ModelConfig
    from modelsync.sync import Outcome, Syncer
    from modelsync.volume import Store

    bucket = tmp_path / "bucket" / "ranker"
    revision = bucket / "1"
    revision.mkdir(parents=True)
    old = time.time() - 3600

    def copy(name: str, data: bytes) -> None:
        (revision / name).write_bytes(data)
        os.utime(revision / name, (old, old))

    copy("saved_model.pb", b"graph")
    copy("_SUCCESS", b"")
    model = ModelConfig(
        name="ranker", source=f"file://{bucket}", complete_marker="_SUCCESS", settle=30
    )
    late = threading.Timer(1.0, copy, ("variables.data", b"weights that come later"))
    late.start()
    syncer = Syncer(Store(tmp_path / "store", tmp_path / ".state"))
    first = syncer.sync(model, CancelToken())
    late.join()
    assert (first.outcome, first.active) == (Outcome.UNCHANGED, None)
    second = syncer.sync(model, CancelToken())
    assert (second.outcome, second.active) == (Outcome.ACTIVATED, 1)
    served = tmp_path / "store" / "ranker" / "current"
    assert (served / "variables.data").read_bytes() == b"weights that come later"
