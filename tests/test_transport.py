"""The transport layer: one pass deadline over every socket modelsync opens (storage
backends on their real API servers, the model servers' HTTP APIs), and network errors
said in one line with the cause and the host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.errors import Cancelled
from modelsync.manifest import MANIFEST_NAME
from modelsync.sources.base import Sink
from tests.backends import NetworkBackend, put_objects, shard_files
from tests.faultproxy import FaultPlan, FaultProxy

PASS_TIMEOUT = 3.0
# Time allowed past the deadline: the cut, and azure's own 1 s sleep before its retry.
SLACK = 2.5


@pytest.fixture
def proxy(network_backend: NetworkBackend) -> Iterator[FaultProxy]:
    proxy = FaultProxy(network_backend.port).start()
    yield proxy
    proxy.stop()


def _stage(backend: NetworkBackend, stage: str) -> str:
    return {
        "listing": backend.listing_mark,
        "manifest": MANIFEST_NAME,
        "media": backend.in_path("1/variables/shard-"),
        "control": backend.in_path("_channels/stable.json"),
    }[stage]


def _call(
    backend: NetworkBackend, proxy: FaultProxy, stage: str, cancel: CancelToken, tmp: Path
) -> None:
    source = backend.source(proxy.url)
    try:
        if stage == "listing":
            source.list_versions(cancel)
        elif stage == "manifest":
            source.read_object(1, MANIFEST_NAME, 1 << 20, cancel)
        elif stage == "media":
            with Sink(tmp / "object", None, "object") as sink:
                source.fetch(1, "variables/shard-000", sink, cancel)
        else:
            source.get_control("_channels/stable.json", 1 << 16, None, cancel)
    finally:
        source.close()


@pytest.mark.parametrize("mode", ["drip", "silent"])
@pytest.mark.parametrize("stage", ["listing", "manifest", "media", "control"])
def test_a_dripping_or_silent_store_is_cut_at_the_pass_deadline(
    tmp_path: Path, network_backend: NetworkBackend, proxy: FaultProxy, stage: str, mode: str
) -> None:
    """An answer dripped at 1 byte / 2 s, or never sent, ends Cancelled at pass_timeout."""
    put_objects(network_backend, 1, shard_files(1, 4096, 3))
    network_backend.put("_channels/stable.json", b'{"stable": 1}')
    mark = _stage(network_backend, stage)
    proxy.plan = FaultPlan(
        drip=2.0 if mode == "drip" else 0.0, silent=mode == "silent", slow=lambda p: mark in p
    )
    started = time.monotonic()
    with pytest.raises(Cancelled):
        _call(network_backend, proxy, stage, CancelToken(deadline=started + PASS_TIMEOUT), tmp_path)
    elapsed = time.monotonic() - started
    print(f"{network_backend.name} {stage} {mode}: cut after {elapsed:.2f} s")
    assert elapsed < PASS_TIMEOUT + SLACK, elapsed


def test_s3_behind_an_http_proxy_is_cut_at_the_deadline(
    s3_backend: NetworkBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's proxy pools (made on first use, of its own classes) are cut too."""
    put_objects(s3_backend, 1, shard_files(1, 4096, 3))
    port = int(s3_backend.options()["endpoint_url"].rsplit(":", 1)[1])
    proxy = FaultProxy(port, FaultPlan(drip=2.0, slow=lambda p: "delimiter" in p)).start()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "")
    source = s3_backend.source()
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            source.list_versions(CancelToken(deadline=started + PASS_TIMEOUT))
    finally:
        source.close()
        proxy.stop()
    assert len(proxy.requests) >= 1  # the request did go through the proxy
    assert time.monotonic() - started < PASS_TIMEOUT + SLACK
