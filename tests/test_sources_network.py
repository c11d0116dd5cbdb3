"""The network half of the contract, for every network backend on its real API server
(gcp-storage-emulator, moto, Azurite) through a fault-injecting, counting proxy,
opened through the registry with the backend's own source_options."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import AccessDeniedError, NotFoundError, PublishConflict
from modelsync.manifest import MANIFEST_NAME
from modelsync.publish import publish
from modelsync.retry import RetryPolicy
from modelsync.sources import open_source
from modelsync.sync import Outcome, PassResult, Syncer
from modelsync.volume import Store
from tests.backends import NetworkBackend, put_objects, shard_files
from tests.faultproxy import FaultPlan, FaultProxy
from tests.helpers import check_invariants, run_cli, snapshot, write_tree

FAST_RETRY = RetryPolicy(attempts=12, initial=0.01, maximum=0.2, total=120)


@pytest.fixture
def proxy(network_backend: NetworkBackend) -> Iterator[FaultProxy]:
    proxy = FaultProxy(network_backend.port).start()
    yield proxy
    proxy.stop()


def _model(backend: NetworkBackend, proxy: FaultProxy, **options: object) -> ModelConfig:
    return ModelConfig(
        name="ranker", source=backend.url, source_options={**backend.options(proxy.url), **options}
    )


def _syncer(tmp_path: Path) -> Syncer:
    return Syncer(Store(tmp_path / "store", tmp_path / ".state"), retry=FAST_RETRY)


def _sync(tmp_path: Path, model: ModelConfig, cancel: CancelToken | None = None) -> PassResult:
    syncer = _syncer(tmp_path)
    try:
        return syncer.sync(model, cancel or CancelToken())
    finally:
        syncer.close()


def _naming(target: str) -> Callable[[str], bool]:
    """A FaultPlan.only that picks the requests for ``target``."""
    return lambda path: target in path


def _current(tmp_path: Path) -> Path:
    return tmp_path / "store" / "ranker" / "current"


def test_idle_pass_costs_one_small_request(
    tmp_path: Path, network_backend: NetworkBackend, proxy: FaultProxy
) -> None:
    """Nothing new: one delimiter listing of a few KB; a candidate's manifest read once."""
    for version in range(1, 21):
        network_backend.put(f"{version}/saved_model.pb", b"x")  # incomplete: no manifest
    put_objects(network_backend, 50, shard_files(3, 1000, 1))
    syncer = _syncer(tmp_path)
    model = _model(network_backend, proxy)
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    manifest_reads = [p for _, p in proxy.requests if MANIFEST_NAME in p]
    assert len(manifest_reads) == 1, manifest_reads
    for _ in range(3):
        proxy.reset_counts()
        assert syncer.sync(model, CancelToken()).outcome is Outcome.UNCHANGED
        assert len(proxy.requests) == 1, proxy.requests
        assert network_backend.listing_mark in proxy.requests[0][1]
        assert proxy.bytes_out < 4096, proxy.bytes_out
    syncer.close()


def test_sync_completes_with_30_percent_faults(
    tmp_path: Path, network_backend: NetworkBackend, proxy: FaultProxy
) -> None:
    """503, 429, resets, truncations and delays on 30 % of requests: every byte arrives."""
    files = shard_files(30, 64 * 1024, 2)
    put_objects(network_backend, 1, files)
    proxy.plan = FaultPlan(rate=0.3, seed=1234)
    result = _sync(tmp_path, _model(network_backend, proxy))
    assert result.outcome is Outcome.ACTIVATED, result.error
    for name, data in files.items():
        assert (_current(tmp_path) / name).read_bytes() == data
    assert sum(proxy.faults.values()) >= 10
    assert set(proxy.faults) == {"503", "429", "reset", "truncate", "delay"}
    assert check_invariants(tmp_path / "store", "ranker").violations == []


def test_flipped_byte_fails_the_pass_and_keeps_the_store(
    tmp_path: Path, network_backend: NetworkBackend, proxy: FaultProxy
) -> None:
    """A byte flipped in transit fails the storage checksum: the pass fails, the store is
    unchanged, and the object is not fetched again in that pass."""
    put_objects(network_backend, 1, shard_files(2, 5000, 3))
    model = _model(network_backend, proxy)
    assert _sync(tmp_path, model).active == 1
    before = snapshot(tmp_path / "store" / "ranker")
    put_objects(network_backend, 2, shard_files(2, 5000, 4))
    target = network_backend.in_path("2/variables/shard-001")
    proxy.plan = FaultPlan(flip=lambda path: target in path)
    result = _sync(tmp_path, model)
    assert result.outcome is Outcome.FAILED
    assert "checksum mismatch" in (result.error or ""), result.error
    assert snapshot(tmp_path / "store" / "ranker") == before
    assert len([p for _, p in proxy.requests if target in p]) == 1


def test_large_objects_download_in_verified_ranges(
    tmp_path: Path, network_backend: NetworkBackend, proxy: FaultProxy
) -> None:
    """Objects over the threshold come in parallel ranges, checked by the storage's
    checksum and sha256; a byte flipped in a range refuses nothing but fails the pass."""
    files = shard_files(2, 3 * 1024 * 1024 + 17, 5)
    put_objects(network_backend, 1, files)
    model = _model(network_backend, proxy, range_threshold="1MiB", range_size="512KiB")
    result = _sync(tmp_path, model)
    assert result.outcome is Outcome.ACTIVATED, result.error
    shard = network_backend.in_path("1/variables/shard-000")
    # One metadata request (size, checksum), then 7 ranges of 512 KiB.
    requests = [(m, p) for m, p in proxy.requests if shard in p]
    assert len(requests) == 1 + 7, requests
    for name, data in files.items():
        assert (_current(tmp_path) / name).read_bytes() == data
    put_objects(network_backend, 2, shard_files(2, 3 * 1024 * 1024 + 17, 6))
    before = snapshot(tmp_path / "store" / "ranker")
    target = network_backend.in_path("2/variables/")
    # The objects' bytes, not gs's JSON metadata answer (s3 and az describe by HEAD):
    # a damaged metadata answer fails in its own line, tested in test_backends_gs.py.
    proxy.plan = FaultPlan(flip=lambda path: target in path and "fields=" not in path)
    result = _sync(tmp_path, model)
    assert result.outcome is Outcome.FAILED
    assert "mismatch" in (result.error or ""), result.error
    assert snapshot(tmp_path / "store" / "ranker") == before


def test_denied_and_missing_are_one_clear_line_and_not_retried(
    network_backend: NetworkBackend, proxy: FaultProxy
) -> None:
    """403 says what to grant; a missing bucket says what to check; one request each."""
    proxy.plan = FaultPlan(rate=1.0, kinds=("403",))
    source = network_backend.source(proxy.url)
    with pytest.raises(AccessDeniedError) as denied:
        source.list_versions()
    assert "access denied" in str(denied.value) and "\n" not in str(denied.value)
    assert len(proxy.requests) == 1
    source.close()
    proxy.plan = FaultPlan()
    missing = open_source(network_backend.missing_url, network_backend.options(proxy.url))
    with pytest.raises(NotFoundError, match="not found") as info:
        missing.list_versions()
    assert "\n" not in str(info.value)
    missing.close()


@pytest.mark.parametrize("stage", ["listing", "manifest", "media"])
def test_a_dripping_server_cannot_hold_a_pass_past_its_deadline(
    tmp_path: Path, network_backend: NetworkBackend, proxy: FaultProxy, stage: str
) -> None:
    """A server sending 20 bytes a second (far inside any read timeout) during the
    listing, the manifest or the media: the pass ends at its 1 s deadline, cancelled,
    the store untouched."""
    put_objects(network_backend, 1, shard_files(2, 64 * 1024, 7))
    slow = {
        "listing": network_backend.listing_mark,
        "manifest": MANIFEST_NAME,
        "media": network_backend.in_path("1/variables/shard-"),
    }[stage]
    proxy.plan = FaultPlan(throttle=20, slow=lambda path: slow in path)
    started = time.monotonic()
    result = _sync(
        tmp_path, _model(network_backend, proxy), CancelToken(deadline=time.monotonic() + 1)
    )
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.FAILED and "deadline" in (result.error or ""), result.error
    # azure-storage-blob's downloader sleeps 1 s before each of its own read retries
    # (hard-wired in its _download.py): each cut read costs that second too.
    assert elapsed < (5 if network_backend.name == "az" else 3), elapsed
    assert not _current(tmp_path).exists()


def test_publish_writes_the_manifest_only_once(
    tmp_path: Path, network_backend: NetworkBackend
) -> None:
    """The manifest goes last, create-only: a second publisher of the same version is
    refused in one line and the first one's manifest stands."""
    src = write_tree(tmp_path / "src", shard_files(2, 1000, 9))
    options = network_backend.options()
    assert publish(src, network_backend.url, version=3, source_options=options) == 3
    source = network_backend.source()
    first = source.read_object(3, MANIFEST_NAME, 1 << 20)
    assert first is not None
    other = write_tree(tmp_path / "other", shard_files(2, 1000, 10))
    manifest = other / "m.json"
    manifest.write_text("{}")
    if network_backend.name == "gs":
        pytest.skip("gcp-storage-emulator ignores if_generation_match (GCS-EMULATOR.md)")
    with pytest.raises(PublishConflict, match="already exists"):
        source.upload(3, MANIFEST_NAME, manifest, exclusive=True)
    assert source.read_object(3, MANIFEST_NAME, 1 << 20) == first
    source.close()


def test_cli_publish_and_sync(tmp_path: Path, network_backend: NetworkBackend) -> None:
    """The real CLI publishes and syncs, configured the way an operator would: the
    backend's standard environment (emulator host, AWS_ENDPOINT_URL_S3...) or
    --source-option."""
    env = network_backend.env()
    src = write_tree(tmp_path / "src", shard_files(3, 10_000, 8))
    out = run_cli("publish", str(src), network_backend.url, "--version", "7", env=env)
    assert out.returncode == 0, out.stderr
    store = tmp_path / "data" / "models"
    out = run_cli(
        "sync", "--store", str(store), "--model", "ranker", "--source", network_backend.url, env=env
    )
    assert out.returncode == 0, out.stderr
    for name, data in shard_files(3, 10_000, 8).items():
        assert (store / "ranker" / "7" / name).read_bytes() == data
    bad = run_cli(
        "publish", str(src), network_backend.url, "--source-option", "range_size=1", env=env
    )
    assert bad.returncode == 2, bad.stderr
    assert "source_options.range_size" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["../../../evil", "a/../../evil", "/abs/evil", "./evil"])
def test_object_names_that_climb_out_refuse_the_revision(
    tmp_path: Path, network_backend: NetworkBackend, name: str
) -> None:
    """An attacker's object named to leave the revision (stores keep such keys
    verbatim, or normalise them): with complete_marker there is no manifest to vouch
    for names, so the listing is the whole truth. The revision is refused or the
    name never resolves outside; nothing lands outside the store."""
    if network_backend.name == "gs" and ".." in name:
        pytest.skip("gcp-storage-emulator drops the connection on a '..' part (real GCS keeps it)")
    network_backend.put("1/saved_model.pb", b"graph")
    try:
        network_backend.put(f"1/{name}", b"x")
    except Exception as exc:  # the store or its SDK refuses to write the name at all
        pytest.skip(f"{network_backend.name} cannot hold {name!r}: {type(exc).__name__}")
    model = ModelConfig(
        name="ranker",
        source=network_backend.url,
        source_options=network_backend.options(),
        complete_marker="saved_model.pb",
        settle=0,
    )
    syncer = Syncer(Store(tmp_path / "data" / "models", tmp_path / "data" / ".state"))
    try:
        result = syncer.sync(model, CancelToken())
    finally:
        syncer.close()
    listed = {o.name for o in network_backend.source().list_objects(1)}
    if any(part in ("..", ".", "") for n in listed for part in n.split("/")):
        assert result.refused == [1], (listed, result)
    assert not any(p.name == "evil" for p in tmp_path.rglob("evil") if "data" not in p.parts)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "data" / "evil").exists()


def test_one_answer_that_is_not_what_was_asked_for_refuses_nothing(
    tmp_path: Path, network_backend: NetworkBackend, proxy: FaultProxy
) -> None:
    """One ranged GET answered 200 with the whole object (a cache that drops Range), and
    one manifest answered gzip-encoded although identity was asked for (a compressing
    proxy): each is retried as the transfer fault it is; the revision is activated on the
    first pass and nothing is refused."""
    files = shard_files(1, 2 * 1024 * 1024 + 3, 7)
    put_objects(network_backend, 1, files)
    big = network_backend.in_path("1/variables/shard-000")
    manifest = network_backend.in_path(f"1/{MANIFEST_NAME}")
    model = _model(network_backend, proxy, range_threshold="1MiB", range_size="512KiB")
    for kind, target in (("gzip", manifest), ("norange", big)):
        proxy.reset_counts()
        proxy.plan = FaultPlan(rate=1.0, kinds=(kind,), only=_naming(target), limit=1)
        state = tmp_path / kind
        result = _sync(state, model)
        assert (result.outcome, result.active) == (Outcome.ACTIVATED, 1), (kind, result.error)
        assert result.refused == [] and result.ok, result.refused
        assert proxy.faults == {kind: 1}, proxy.faults
        for name, data in files.items():
            assert (_current(state) / name).read_bytes() == data


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("403", "variables/shard-000"),
        ("403", MANIFEST_NAME),
        ("norange", "variables/shard-000"),
        ("gzip", "variables/shard-000"),
    ],
)
def test_a_newest_revision_that_cannot_be_fetched_leaves_the_one_below_served(
    tmp_path: Path, network_backend: NetworkBackend, proxy: FaultProxy, kind: str, name: str
) -> None:
    """A fresh host; one object of revision 2 cannot be fetched: forbidden (403: a file,
    or the manifest itself), every ranged GET answered whole, or every answer
    gzip-encoded. None of that is a refusal: revision 1 is served in the same pass, 2 is
    passed over (not refused) and the next pass brings it in once the store answers."""
    put_objects(network_backend, 1, shard_files(1, 5000, 8))
    put_objects(network_backend, 2, shard_files(1, 2 * 1024 * 1024 + 3, 9))
    target = network_backend.in_path(f"2/{name}")
    proxy.plan = FaultPlan(rate=1.0, kinds=(kind,), only=_naming(target))
    model = _model(network_backend, proxy, range_threshold="1MiB", range_size="512KiB")
    result = _sync(tmp_path, model)
    assert (result.outcome, result.active) == (Outcome.ACTIVATED, 1), result.error
    assert list(result.deferred) == [2] and result.refused == [] and not result.ok
    assert proxy.faults[kind] >= 1
    state = Store(tmp_path / "store", tmp_path / ".state").model("ranker").load_state()
    assert state.refused == {}
    proxy.plan = FaultPlan()
    again = _sync(tmp_path, model)
    assert (again.outcome, again.active) == (Outcome.ACTIVATED, 2), again.error
    assert again.ok
    assert check_invariants(tmp_path / "store", "ranker").violations == []


def test_a_manifest_read_wrong_once_is_read_again_before_any_refusal(
    tmp_path: Path, network_backend: NetworkBackend, proxy: FaultProxy
) -> None:
    """A manifest answer whose bytes pass every transport check but not the manifest's
    own (a proxy rewrote it, checksums and all) is read again before a refusal, as a
    file is fetched again: wrong once, the revision is activated; the same wrong bytes
    on two reads (what is published, as far as modelsync can tell) refuse it."""
    put_objects(network_backend, 1, shard_files(1, 5000, 10))
    manifest = network_backend.in_path(f"1/{MANIFEST_NAME}")
    model = _model(network_backend, proxy)
    proxy.plan = FaultPlan(rate=1.0, kinds=("garble",), only=_naming(manifest), limit=1)
    once = _sync(tmp_path / "once", model)
    assert (once.outcome, once.active) == (Outcome.ACTIVATED, 1), once.error
    assert once.refused == [] and proxy.faults == {"garble": 1}
    proxy.reset_counts()
    proxy.plan = FaultPlan(rate=1.0, kinds=("garble",), only=_naming(manifest))
    always = _sync(tmp_path / "always", model)
    assert always.refused == [1] and always.active is None
    assert "not valid JSON" in (always.error or ""), always.error
    assert proxy.faults == {"garble": 2}
