"""What only gs:// has: its error hints, and marker-mode listings on the emulator (the
shared network contract is tests/test_sources_network.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from modelsync.backends.gs import GcsOptions, GcsSource
from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import (
    AccessDeniedError,
    IntegrityError,
    NotFoundError,
    RefusedError,
    SourceError,
)
from modelsync.retry import RetryPolicy
from modelsync.sources import Sink, Source, SourceFactory
from modelsync.sync import Outcome, PassResult, Syncer
from modelsync.volume import Store
from tests.backends import GcsBackend, shard_files
from tests.faultproxy import FaultPlan, FaultProxy
from tests.helpers import (
    check_invariants,
    manifest_doc,
    run_cli,
    service_account_file,
    sidecar_flags,
)
from tests.httpstub import http_stub
from tests.rewriteproxy import Answer, Rewrite, RewriteProxy

FAST_RETRY = RetryPolicy(attempts=12, initial=0.01, maximum=0.2, total=120)


def _through(proxy: FaultProxy, **settings: Any) -> SourceFactory:
    def factory(url: str, _options: Mapping[str, Any]) -> Source:
        return GcsSource(url, GcsOptions(endpoint=proxy.url, **settings), retry=FAST_RETRY)

    return factory


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


def test_denied_and_missing_are_one_clear_line_and_not_retried(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """403 names the bucket and the role to grant; 404 names what to check; one request each."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    fault_proxy.plan = FaultPlan(rate=1.0, kinds=("403",))
    source = _through(fault_proxy)(backend.url, {})
    with pytest.raises(AccessDeniedError) as denied:
        source.list_versions()
    assert gcs_bucket in str(denied.value) and "roles/storage.objectViewer" in str(denied.value)
    assert "\n" not in str(denied.value)
    assert len(fault_proxy.requests) == 1
    fault_proxy.plan = FaultPlan()
    with pytest.raises(NotFoundError, match="check the bucket"):
        _through(fault_proxy)("gs://no-such-bucket/m", {}).list_versions()
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
    files = shard_files(2, 2000, 7)
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


def test_sync_reads_gs_without_the_storage_sdk(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str
) -> None:
    """A fetching and a no-op `sync` of a gs:// model (listing, manifest, files)
    never import google.cloud.storage (every read is the JSON API on the engine), nor,
    with an emulator's anonymous credentials, the token-refresh transport (requests)."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    src = tmp_path / "src"
    for name, data in shard_files(3, 5000, 11).items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    out = run_cli("publish", str(src), backend.url, "--version", "4", env=backend.env())
    assert out.returncode == 0, out.stderr
    store = tmp_path / "store"
    # sys.modules in the real child, after the command: -X importtime misses modules
    # loaded through importlib (the backends are), so it cannot prove an absence.
    code = (
        "import sys\n"
        "from modelsync.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "finally:\n"
        "    print(sorted(sys.modules), file=sys.stderr)\n"
    )
    for _ in ("fetching", "no-op"):
        result = subprocess.run(
            [sys.executable, "-c", code, "sync", *sidecar_flags(store, backend.url)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **backend.env()},
            check=False,
        )
        assert result.returncode == 0, result.stderr
        modules = ast.literal_eval(result.stderr.strip().splitlines()[-1])
        assert "modelsync.backends.gs" in modules  # the gs backend really ran here
        assert [m for m in modules if m.startswith("google.cloud.storage")] == []
        transport = ("requests", "google.auth.transport.requests")
        assert [m for m in modules if m in transport or m.startswith("requests.")] == []
    for name, data in shard_files(3, 5000, 11).items():
        assert (store / "ranker" / "4" / name).read_bytes() == data


def test_reads_follow_api_endpoint_override_as_the_sdk_does(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str
) -> None:
    """API_ENDPOINT_OVERRIDE (storage.Client's private-endpoint variable, credentials
    still sent) moves the engine's reads too: a `sync` with only that variable set
    reads the revision from there, with a token from Application Default Credentials
    (a service-account key whose token endpoint is a local stub)."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    src = tmp_path / "src"
    for name, data in shard_files(2, 5000, 12).items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    out = run_cli("publish", str(src), backend.url, "--version", "5", env=backend.env())
    assert out.returncode == 0, out.stderr
    token = json.dumps({"access_token": "t", "expires_in": 3600, "token_type": "Bearer"})
    with http_stub(lambda _m, _p, _b: (200, token.encode())) as (token_url, asked):
        env = {
            "STORAGE_EMULATOR_HOST": "",
            "API_ENDPOINT_OVERRIDE": gcs_emulator,
            "GOOGLE_APPLICATION_CREDENTIALS": str(
                service_account_file(tmp_path / "sa.json", f"{token_url}/token")
            ),
        }
        store = tmp_path / "store"
        out = run_cli("sync", *sidecar_flags(store, backend.url), env=env)
    assert out.returncode == 0, out.stderr
    for name, data in shard_files(2, 5000, 12).items():
        assert (store / "ranker" / "5" / name).read_bytes() == data
    assert [method for method, _, _ in asked] == ["POST"]  # one token, then reads


def test_a_damaged_metadata_answer_fails_in_one_line(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """An object's metadata answer that is not JSON fails the read in one line."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    backend.put("_channels/prod.json", b"{}")
    fault_proxy.plan = FaultPlan(flip=lambda path: "fields=" in path)
    source = _through(fault_proxy)(backend.url, {})
    with pytest.raises(SourceError, match="answered with no JSON") as failed:
        source.get_control("_channels/prod.json", 1 << 20)
    assert "\n" not in str(failed.value) and "_channels/prod.json" in str(failed.value)
    source.close()


def _stub_listing(pages: Mapping[str, object]) -> Any:
    """A JSON-API listing server: the page for each pageToken ("" for the first)."""

    def answer(_method: str, path: str, _body: bytes) -> tuple[int, bytes]:
        query = parse_qs(urlsplit(path).query)
        return 200, json.dumps(pages[query.get("pageToken", [""])[0]]).encode()

    return answer


def test_listing_follows_page_tokens_quoted() -> None:
    """Versions on every page are found; prefix and page token travel percent-encoded."""
    pages = {
        "": {"prefixes": ["m/1/"], "nextPageToken": "a b/c+d"},
        "a b/c+d": {"prefixes": ["m/2/", "m/x/"]},
    }
    with http_stub(_stub_listing(pages)) as (url, seen):
        source = GcsSource("gs://bkt/m", GcsOptions(endpoint=url), retry=FAST_RETRY)
        assert source.list_versions() == [1, 2]
        source.close()
    assert [p.split("?")[0] for _m, p, _b in seen] == ["/storage/v1/b/bkt/o"] * 2
    assert "prefix=m%2F&" in seen[0][1] and "delimiter=%2F" in seen[0][1]
    assert "pageToken=a%20b%2Fc%2Bd" in seen[1][1]


def test_a_listing_that_repeats_its_page_token_stops() -> None:
    """A store handing back a token it gave before fails in one line, not forever."""
    pages = {"": {"prefixes": ["m/1/"], "nextPageToken": "t"}, "t": {"nextPageToken": "t"}}
    with http_stub(_stub_listing(pages)) as (url, seen):
        source = GcsSource("gs://bkt/m", GcsOptions(endpoint=url), retry=FAST_RETRY)
        with pytest.raises(SourceError, match="repeats its page token"):
            source.list_versions()
        source.close()
    assert len(seen) == 2


def test_an_oversized_listing_page_is_refused() -> None:
    """A page larger than any GCS page is refused, not held in memory."""
    pages = {"": {"prefixes": [f"m/{i}/" for i in range(1_000_000)]}}
    with http_stub(_stub_listing(pages)) as (url, _seen):
        source = GcsSource("gs://bkt/m", GcsOptions(endpoint=url), retry=FAST_RETRY)
        with pytest.raises(RefusedError, match="larger than"):
            source.list_versions()
        source.close()


def _syncer_via(tmp_path: Path, endpoint: str) -> Syncer:
    def factory(url: str, _options: Mapping[str, Any]) -> Source:
        return GcsSource(url, GcsOptions(endpoint=endpoint), retry=FAST_RETRY)

    return Syncer(
        Store(tmp_path / "store", tmp_path / "store" / ".modelsync"),
        retry=FAST_RETRY,
        sources=factory,
    )


def test_an_object_stored_gzip_compressed_is_read_decompressed_and_checked_by_sha256(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str
) -> None:
    """GCS serves an object stored with Content-Encoding: gzip decompressed and whole,
    whatever the Range, with the stored bytes' X-Goog-Hash and
    X-Goog-Stored-Content-Encoding (decompressive transcoding; the proxy plays it, the
    emulator does not). The manifest's sha256 of the plain bytes decides: the revision
    is served with the plain bytes, a small file and one above the range threshold.
    (Red-team finding: every pass failed as "damaged in transit".)"""
    import gzip

    backend = GcsBackend(gcs_emulator, gcs_bucket)
    plain = {"small.bin": b"small weights " * 100, "large.bin": os.urandom(3 << 20)}
    for name, data in plain.items():
        _put_gzip_stored(backend, f"3/{name}", gzip.compress(data))
    backend.put("3/modelsync-manifest.json", json.dumps(manifest_doc(plain, "ranker", 3)).encode())

    def hook(method: str, path: str, headers: dict[str, str]) -> Rewrite | None:
        if method != "GET" or "alt=media" not in path or ".bin" not in path:
            return None
        if "gzip" in headers.get("Accept-Encoding", ""):
            return None

        def rewrite(status: int, answer: list[tuple[str, str]], body: bytes) -> Answer:
            kept = [(k, v) for k, v in answer if k.lower() not in ("content-range",)]
            return 200, [*kept, ("X-Goog-Stored-Content-Encoding", "gzip")], gzip.decompress(body)

        return rewrite

    proxy = RewriteProxy(gcs_emulator, hook)
    syncer = _syncer_via(tmp_path, proxy.url)
    try:
        result = syncer.sync(ModelConfig(name="ranker", source=backend.url), CancelToken())
    finally:
        syncer.close()
        proxy.close()
    assert (result.outcome, result.active) == (Outcome.ACTIVATED, 3), result.error
    current = tmp_path / "store" / "ranker" / "current"
    for name, data in plain.items():
        assert (current / name).read_bytes() == data
    assert check_invariants(tmp_path / "store", "ranker").violations == []


def _put_gzip_stored(backend: GcsBackend, key: str, compressed: bytes) -> None:
    """Upload ``compressed`` with Content-Encoding: gzip (as `gcloud storage cp -Z`)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": backend.endpoint},
    )
    blob = client.bucket(backend.bucket).blob(f"{backend.prefix}/{key}")
    blob.content_encoding = "gzip"
    blob.upload_from_string(compressed)
    client.close()


def test_a_redirect_is_not_followed_and_is_one_line_naming_the_object_once() -> None:
    """A store answering 302 (to the metadata address, say) is not followed: one
    request, one SourceError line naming the object and the status once, then what
    the answer said."""
    with http_stub(lambda _m, _p, _b: (302, b"Moved to 169.254.169.254\n")) as (url, seen):
        source = GcsSource("gs://bkt/m", GcsOptions(endpoint=url), retry=FAST_RETRY)
        with pytest.raises(SourceError) as caught:
            source.read_object(1, "modelsync-manifest.json", 1 << 20)
        source.close()
    message = str(caught.value)
    assert message == (
        "gs://bkt/m/1/modelsync-manifest.json: HTTP 302: Moved to 169.254.169.254"
    ), message
    assert len(seen) == 1
