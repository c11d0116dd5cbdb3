"""gs:// against a real GCS API server, through a fault-injecting, counting proxy."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import AccessDeniedError, IntegrityError, NotFoundError
from modelsync.retry import RetryPolicy
from modelsync.sources import Sink, Source
from modelsync.sources.gcs import GcsSettings, GcsSource
from modelsync.syncer import Outcome, PassResult, Syncer
from modelsync.volume import Store
from tests.backends import GcsBackend
from tests.faultproxy import FaultPlan, FaultProxy
from tests.helpers import check_invariants, manifest_doc, run_cli, snapshot, write_tree

FAST_RETRY = RetryPolicy(attempts=12, initial=0.01, maximum=0.2, total=120)


def _files(count: int, size: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"variables/shard-{i:03d}": rng.randbytes(size) for i in range(count)}


def _publish(backend: GcsBackend, version: int, files: dict[str, bytes]) -> None:
    import json

    for name, data in files.items():
        backend.put(f"{version}/{name}", data)
    doc = manifest_doc(files, "ranker", version)
    backend.put(f"{version}/modelsync-manifest.json", json.dumps(doc).encode())


def _through(proxy: FaultProxy, **settings: object) -> Callable[[str], Source]:
    return lambda url: GcsSource(url, GcsSettings(endpoint=proxy.url, retry=FAST_RETRY, **settings))  # type: ignore[arg-type]


def _sync(tmp_path: Path, backend: GcsBackend, proxy: FaultProxy, **settings: object) -> PassResult:
    syncer = Syncer(
        Store(tmp_path / "store", tmp_path / "store" / ".modelsync"),
        retry=FAST_RETRY,
        sources=_through(proxy, **settings),
    )
    try:
        return syncer.sync(ModelConfig(name="ranker", source=backend.url), CancelToken())
    finally:
        syncer.close()


def test_idle_pass_costs_one_small_request(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """Nothing new: one listing request of a few KB; a candidate's manifest is read once."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    for version in range(1, 21):
        backend.put(f"{version}/saved_model.pb", b"x")  # incomplete versions: no manifest
    _publish(backend, 50, _files(3, 1000, 1))
    syncer = Syncer(
        Store(tmp_path / "store", tmp_path / "store" / ".modelsync"),
        retry=FAST_RETRY,
        sources=_through(fault_proxy),
    )
    model = ModelConfig(name="ranker", source=backend.url)
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    manifest_reads = [p for _, p in fault_proxy.requests if "modelsync-manifest.json" in p]
    assert len(manifest_reads) == 1  # only version 50 is newer than nothing... and complete
    for _ in range(3):
        fault_proxy.reset_counts()
        assert syncer.sync(model, CancelToken()).outcome is Outcome.UNCHANGED
        assert len(fault_proxy.requests) == 1, fault_proxy.requests
        assert "delimiter=%2F" in fault_proxy.requests[0][1]
        assert fault_proxy.bytes_out < 4096
    syncer.close()


def test_sync_completes_with_30_percent_faults(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """503, 429, resets, truncations and delays on 30 % of requests: every byte arrives."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    files = _files(30, 64 * 1024, 2)
    _publish(backend, 1, files)
    fault_proxy.plan = FaultPlan(rate=0.3, seed=1234)
    result = _sync(tmp_path, backend, fault_proxy)
    assert result.outcome is Outcome.ACTIVATED, result.error
    for name, data in files.items():
        assert (tmp_path / "store" / "ranker" / "current" / name).read_bytes() == data
    assert sum(fault_proxy.faults.values()) >= 10
    assert set(fault_proxy.faults) == {"503", "429", "reset", "truncate", "delay"}
    assert check_invariants(tmp_path / "store", "ranker").violations == []


def test_flipped_byte_fails_the_pass_and_keeps_the_store(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """A byte flipped in transit fails crc32c: the pass fails, the store is unchanged."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    _publish(backend, 1, _files(2, 5000, 3))
    assert _sync(tmp_path, backend, fault_proxy).active == 1
    before = snapshot(tmp_path / "store" / "ranker")
    _publish(backend, 2, _files(2, 5000, 4))
    fault_proxy.plan = FaultPlan(flip=lambda path: "shard-001" in path and "%2F2%2F" in path)
    result = _sync(tmp_path, backend, fault_proxy)
    assert result.outcome is Outcome.FAILED
    assert "crc32c checksum mismatch" in (result.error or "")
    assert snapshot(tmp_path / "store" / "ranker") == before
    fetches = [p for _, p in fault_proxy.requests if "shard-001" in p and "%2F2%2F" in p]
    assert len(fetches) == 1  # a checksum mismatch is not retried
    assert not list((tmp_path / "store" / ".modelsync" / "staging").rglob("*"))


def test_large_objects_download_in_verified_ranges(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """Objects over the threshold come in parallel ranges, checked by crc32c and sha256."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    files = _files(2, 3 * 1024 * 1024 + 17, 5)
    _publish(backend, 1, files)
    settings = {"range_threshold": 1024 * 1024, "range_size": 512 * 1024}
    result = _sync(tmp_path, backend, fault_proxy, **settings)
    assert result.outcome is Outcome.ACTIVATED, result.error
    ranged = [p for _, p in fault_proxy.requests if "shard-000" in p and "alt=media" in p]
    assert len(ranged) == 7
    for name, data in files.items():
        assert (tmp_path / "store" / "ranker" / "current" / name).read_bytes() == data
    # The same, with a byte flipped in every range of version 2: refused, store intact.
    _publish(backend, 2, _files(2, 3 * 1024 * 1024 + 17, 6))
    before = snapshot(tmp_path / "store" / "ranker")
    fault_proxy.plan = FaultPlan(flip=lambda path: "%2F2%2F" in path and "alt=media" in path)
    result = _sync(tmp_path, backend, fault_proxy, **settings)
    assert result.outcome is Outcome.FAILED
    assert "crc32c" in (result.error or "")
    assert snapshot(tmp_path / "store" / "ranker") == before


def test_denied_and_missing_are_one_clear_line_and_not_retried(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """403 names the bucket and the role to grant; 404 names what to check; one request each."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    fault_proxy.plan = FaultPlan(rate=1.0, kinds=("403",))
    source = _through(fault_proxy)(backend.url)
    with pytest.raises(AccessDeniedError) as denied:
        source.list_versions()
    assert gcs_bucket in str(denied.value) and "roles/storage.objectViewer" in str(denied.value)
    assert "\n" not in str(denied.value)
    assert len(fault_proxy.requests) == 1
    fault_proxy.plan = FaultPlan()
    with pytest.raises(NotFoundError, match="check the bucket"):
        _through(fault_proxy)("gs://no-such-bucket/m").list_versions()
    with pytest.raises(IntegrityError), Sink(tmp_path / "x", None, "t") as sink:
        backend.put("1/f", b"abc")
        fault_proxy.plan = FaultPlan(flip=lambda path: "alt=media" in path)
        source.fetch(1, "f", sink, CancelToken())
    source.close()


def test_marker_mode_waits_for_marker_and_settle(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """Without a manifest: no marker → ignored; marker but unsettled → waits; then synced."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    files = _files(2, 2000, 7)
    for name, data in files.items():
        backend.put(f"1/{name}", data)
    store = Store(tmp_path / "store", tmp_path / "store" / ".modelsync")
    now = [0.0]
    syncer = Syncer(
        store, retry=FAST_RETRY, sources=_through(fault_proxy), wall_clock=lambda: now[0]
    )
    model = ModelConfig(
        name="ranker", source=backend.url, complete_marker="saved_model.pb", settle=120
    )
    import time

    now[0] = time.time() + 3600
    assert syncer.sync(model, CancelToken()).active is None  # no marker yet
    backend.put("1/saved_model.pb", b"graph")
    now[0] = time.time() + 10
    assert syncer.sync(model, CancelToken()).active is None  # not settled
    now[0] = time.time() + 200
    result = syncer.sync(model, CancelToken())
    syncer.close()
    assert (result.outcome, result.active) == (Outcome.ACTIVATED, 1)
    current = tmp_path / "store" / "ranker" / "current"
    assert (current / "saved_model.pb").read_bytes() == b"graph"
    assert check_invariants(tmp_path / "store", "ranker").violations == []


def test_marker_mode_refuses_escaping_object_names(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """An object named to climb out of the revision refuses the revision; nothing written."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    backend.put("1/saved_model.pb", b"graph")
    # The emulator cannot store a literal ".." part (real GCS can); "." and "" parts
    # take the same refusal path in check_relpath.
    backend.put("1/./evil", b"x")
    syncer = Syncer(
        Store(tmp_path / "store", tmp_path / "store" / ".modelsync"),
        retry=FAST_RETRY,
        sources=_through(fault_proxy),
        wall_clock=lambda: 4e9,
    )
    model = ModelConfig(
        name="ranker", source=backend.url, complete_marker="saved_model.pb", settle=0
    )
    result = syncer.sync(model, CancelToken())
    syncer.close()
    assert result.refused == [1]
    assert not (tmp_path / "etc").exists()
    assert not any((tmp_path / "store").rglob("evil"))


def test_cli_publish_and_sync_against_the_emulator(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str
) -> None:
    """The real CLI publishes to gs:// and syncs from it (STORAGE_EMULATOR_HOST)."""
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator}
    url = f"gs://{gcs_bucket}/models/ranker"
    src = write_tree(tmp_path / "src", _files(3, 10_000, 8))
    out = run_cli("publish", str(src), url, "--version", "7", env=env)
    assert out.returncode == 0, out.stderr
    out = run_cli(
        "sync", "--store", str(tmp_path / "store"), "--model", "ranker", "--source", url, env=env
    )
    assert out.returncode == 0, out.stderr
    for name, data in _files(3, 10_000, 8).items():
        assert (tmp_path / "store" / "ranker" / "7" / name).read_bytes() == data
    assert "token" not in out.stderr.lower() or "[redacted]" in out.stderr
    assert os.readlink(tmp_path / "store" / "ranker" / "current") == "7"


@pytest.mark.parametrize("stage", ["listing", "manifest", "media"])
def test_a_dripping_server_cannot_hold_a_pass_past_its_deadline(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy, stage: str
) -> None:
    """Issue 11: a server that sends 20 bytes a second (far inside any read timeout)
    during the listing, the manifest or the media: the pass ends at its 1 s deadline,
    cancelled, the store untouched (the smallest of these bodies takes 4 s to drip)."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    _publish(backend, 1, _files(2, 64 * 1024, 7))
    slow = {"listing": "delimiter", "manifest": "manifest", "media": "shard-"}[stage]
    fault_proxy.plan = FaultPlan(throttle=20, slow=lambda path: slow in path)
    syncer = Syncer(
        Store(tmp_path / "store", tmp_path / ".state"),
        retry=FAST_RETRY,
        sources=_through(fault_proxy),
    )
    started = time.monotonic()
    try:
        result = syncer.sync(
            ModelConfig(name="ranker", source=backend.url),
            CancelToken(deadline=time.monotonic() + 1),
        )
    finally:
        syncer.close()
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.FAILED and "deadline" in (result.error or ""), result.error
    assert elapsed < 3, elapsed
    assert not (tmp_path / "store" / "ranker" / "current").exists()
