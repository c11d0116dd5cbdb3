"""The chosen revision brought in, or an older one standing in for it (modelsync.sync.bring).

Real file:// buckets and stores: a revision that cannot be fetched (not a refusal)
is passed over and the one below is served in the same pass; revisions refused on
their download are refused for good and the pass goes on down the listing; with
nothing newer than the active one left, the pass fails with the store as it was.
"""

from __future__ import annotations

from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.sync import Outcome, PassResult, Syncer
from modelsync.volume import Store
from tests.helpers import (
    check_invariants,
    model_files,
    put_revision,
    run_cli,
    sidecar_flags,
    snapshot,
)


def _sync(store: Path, bucket: Path) -> PassResult:
    syncer = Syncer(Store(store, store / ".modelsync"))
    try:
        return syncer.sync(ModelConfig(name="ranker", source=f"file://{bucket}"), CancelToken())
    finally:
        syncer.close()


def _newest_missing_an_object(bucket: Path) -> None:
    """Revisions 1 and 2 good; 3's manifest lists a file the bucket does not hold (an
    upload cut short, or in progress behind a manifest written too early)."""
    put_revision(bucket, 1, model_files(1))
    put_revision(bucket, 2, model_files(2))
    put_revision(bucket, 3, model_files(3))
    (bucket / "3" / "saved_model.pb").unlink()


def test_a_newest_revision_missing_an_object_leaves_the_one_below_served(
    store: Path, bucket: Path
) -> None:
    """A fresh host: revision 3 cannot be fetched (an object it lists does not exist),
    which is not a refusal. Revision 2 is served in the same pass and the result says
    3 was passed over (not ok); 3 is not refused, so it is brought in once it is whole."""
    _newest_missing_an_object(bucket)
    result = _sync(store, bucket)
    assert (result.outcome, result.active) == (Outcome.ACTIVATED, 2), result.error
    assert list(result.deferred) == [3] and "does not exist" in result.deferred[3]
    assert result.refused == [] and not result.ok and not result.succeeded
    assert result.retry_soon
    ms = Store(store, store / ".modelsync").model("ranker")
    state = ms.load_state()
    assert state.refused == {}
    assert state.last_error is not None and "version 3 could not be fetched" in state.last_error
    assert check_invariants(store, "ranker").violations == []
    # Still broken, and nothing newer than the active one to stand in: the pass fails
    # with the store as it was.
    before = snapshot(store / "ranker")
    again = _sync(store, bucket)
    assert (again.outcome, again.active) == (Outcome.FAILED, 2)
    assert "does not exist" in (again.error or "") and again.refused == []
    assert snapshot(store / "ranker") == before
    # The upload completes: the next pass brings 3 in.
    (bucket / "3" / "saved_model.pb").write_bytes(model_files(3)["saved_model.pb"])
    last = _sync(store, bucket)
    assert (last.outcome, last.active) == (Outcome.ACTIVATED, 3) and last.ok


def test_every_newer_revision_broken_below_the_active_one_fails_the_pass(
    store: Path, bucket: Path
) -> None:
    """Active 1; 2 and 3 each miss an object: both are passed over (walked down in one
    pass), neither refused, and the pass fails with the store unchanged."""
    put_revision(bucket, 1, model_files(1))
    assert _sync(store, bucket).active == 1
    for version in (2, 3):
        put_revision(bucket, version, model_files(version))
        (bucket / str(version) / "saved_model.pb").unlink()
    before = snapshot(store / "ranker")
    result = _sync(store, bucket)
    assert (result.outcome, result.active) == (Outcome.FAILED, 1)
    assert sorted(result.deferred) == [2, 3] and result.refused == []
    assert snapshot(store / "ranker") == before


def test_sync_exits_1_when_an_older_revision_stands_in_for_the_newest(
    store: Path, bucket: Path
) -> None:
    """`sync` (and `sync --require`) serve revision 2 when 3 cannot be fetched, and exit 1
    with a warning naming 3 and the error: the model is not on its newest revision."""
    _newest_missing_an_object(bucket)
    out = run_cli("--log-format", "console", "sync", "--require", *sidecar_flags(store, bucket))
    assert out.returncode == 1, out.stderr
    assert "a newer revision could not be fetched" in out.stderr + out.stdout
    assert "saved_model.pb" in out.stderr + out.stdout
    # And one plain line that says why the command exits 1 although a revision is served.
    plain = [line for line in out.stderr.splitlines() if line.startswith("modelsync: model")]
    assert plain == [
        f"modelsync: model ranker: version 3 could not be fetched ({bucket.as_uri()}"
        "/3/saved_model.pb: object does not exist); serving 2 meanwhile"
    ], out.stderr
    assert (store / "ranker" / "current").resolve().name == "2"


def test_revisions_refused_on_download_are_walked_past_in_one_pass(
    store: Path, bucket: Path
) -> None:
    """A fresh host; revisions 2 and 3 each hold a file whose bytes are not their
    manifest's. The first pass refuses both (for good: their bytes will not change
    into the manifest's) and serves 1; nothing of 2 or 3 reaches the served tree, and
    a good 4 is served by the next pass."""
    for version in (1, 2, 3):
        put_revision(bucket, version, model_files(version))
    for version in (2, 3):
        (bucket / str(version) / "saved_model.pb").write_bytes(b"not the manifest's bytes")
    result = _sync(store, bucket)
    assert (result.outcome, result.active) == (Outcome.ACTIVATED, 1), result.error
    assert sorted(result.refused) == [2, 3] and result.deferred == {}
    ms = Store(store, store / ".modelsync").model("ranker")
    assert ms.served_versions() == [1]
    assert sorted(ms.load_state().refused) == [2, 3]
    assert check_invariants(store, "ranker").violations == []
    # Refused for good: the next pass neither fetches nor serves them.
    again = _sync(store, bucket)
    assert (again.outcome, again.active) == (Outcome.UNCHANGED, 1)
    put_revision(bucket, 4, model_files(4))
    last = _sync(store, bucket)
    assert (last.outcome, last.active) == (Outcome.ACTIVATED, 4) and last.ok
