"""The transport layer: one pass deadline over every socket modelsync opens (storage
backends on their real API servers, the model servers' HTTP APIs), and network errors
said in one line with the cause and the host."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.confirm import ConfirmConfig, build_prober, wait_loaded
from modelsync.errors import Cancelled, LoadUnknown, ReloadError, SourceError
from modelsync.manifest import MANIFEST_NAME
from modelsync.notify import NotifyConfig, build_notifier
from modelsync.reload import ReloadTarget
from modelsync.sources.base import Sink
from tests.backends import NetworkBackend, no_aws_credentials, put_objects, shard_files
from tests.faultproxy import FaultPlan, FaultProxy
from tests.forwardproxy import ForwardProxy
from tests.helpers import run_cli, service_account_file
from tests.httpstub import http_stub

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


TARGET = ReloadTarget("ranker", 7, Path("/models/ranker/7"))


@pytest.fixture
def server_proxy() -> Iterator[FaultProxy]:
    """A model server's API (always 200 {"version": 7}) behind a fault proxy."""
    with http_stub(lambda *_: (200, b'{"version": 7}')) as (url, _seen):
        proxy = FaultProxy(int(url.rsplit(":", 1)[1])).start()
        yield proxy
        proxy.stop()


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port whose listen backlog is full: a connect to it is never answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


@pytest.mark.parametrize("mode", ["drip", "silent"])
def test_a_dripping_or_silent_confirm_endpoint_ends_at_confirm_timeout(
    server_proxy: FaultProxy, mode: str
) -> None:
    """confirm.timeout (3 s) bounds the wait even when each answer drips or never comes."""
    server_proxy.plan = FaultPlan(drip=2.0 if mode == "drip" else 0.0, silent=mode == "silent")
    config = ConfirmConfig.of(method="http", url=f"{server_proxy.url}/ready", timeout="3s")
    prober = build_prober(config)
    assert prober is not None
    started = time.monotonic()
    with pytest.raises(LoadUnknown):
        wait_loaded(prober, TARGET, config, CancelToken())
    assert time.monotonic() - started < 3 + SLACK


@pytest.mark.parametrize("mode", ["drip", "silent"])
def test_the_pass_deadline_cuts_a_confirm_and_a_notify(server_proxy: FaultProxy, mode: str) -> None:
    """A pass with 2 s left ends Cancelled though confirm.timeout and notify.timeout are long."""
    server_proxy.plan = FaultPlan(drip=2.0 if mode == "drip" else 0.0, silent=mode == "silent")
    confirm = ConfirmConfig.of(method="http", url=f"{server_proxy.url}/ready", timeout="60s")
    notify = NotifyConfig.of(method="http", url=f"{server_proxy.url}/load", timeout="60s")
    prober = build_prober(confirm)
    assert prober is not None

    def confirming(cancel: CancelToken) -> None:
        wait_loaded(prober, TARGET, confirm, cancel)

    def notifying(cancel: CancelToken) -> None:
        build_notifier(notify).notify(TARGET, cancel)

    for call in (confirming, notifying):
        started = time.monotonic()
        with pytest.raises(Cancelled):
            call(CancelToken(deadline=started + 2))
        assert time.monotonic() - started < 2 + SLACK


def test_a_stop_cuts_a_blackholed_connect(blackhole: int) -> None:
    """A connect nobody answers is cut when the pass's token is stopped."""
    import threading

    notify = NotifyConfig.of(method="http", url=f"http://127.0.0.1:{blackhole}/", timeout="60s")
    cancel = CancelToken()
    threading.Timer(1.0, cancel.stop_event.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        build_notifier(notify).notify(TARGET, cancel)
    assert time.monotonic() - started < 1 + SLACK


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_line_refused(message: str, port: int) -> None:
    assert "connection refused" in message and f"127.0.0.1:{port}" in message, message
    assert "\n" not in message and "Tracked(" not in message, message
    assert "HTTPConnectionPool(" not in message and "Caused by" not in message, message


def test_a_refused_server_call_is_one_line_with_host_and_port() -> None:
    """notify to a closed port: 'connection refused (127.0.0.1:<port>)', nothing internal."""
    port = _closed_port()
    notify = NotifyConfig.of(method="http", url=f"http://127.0.0.1:{port}/load")
    with pytest.raises(ReloadError) as info:
        build_notifier(notify).notify(TARGET, CancelToken())
    _one_line_refused(str(info.value), port)


def test_a_refused_store_is_one_line_with_host_and_port(network_backend: NetworkBackend) -> None:
    """Each backend, its endpoint a closed port: 'connection refused (127.0.0.1:<port>)'."""
    port = _closed_port()
    source = network_backend.source(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(SourceError) as info:
            source.list_versions(CancelToken(deadline=time.monotonic() + 20))
    finally:
        source.close()
    _one_line_refused(str(info.value), port)


def test_a_blackholed_store_connect_ends_at_the_pass_deadline(
    network_backend: NetworkBackend, blackhole: int
) -> None:
    """Each backend, its endpoint a port that never completes a connect: Cancelled at
    the pass deadline (2 s), not at the SDK's connect timeout."""
    source = network_backend.source(f"http://127.0.0.1:{blackhole}")
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            source.list_versions(CancelToken(deadline=started + 2))
    finally:
        source.close()
    assert time.monotonic() - started < 2 + SLACK


# -- credentials: a token endpoint that hangs ------------------------------------


def _hung_credentials_env(kind: str, endpoint: str, tmp_path: Path) -> dict[str, str]:
    """Environment pointing the store's credential chain at ``endpoint`` (a server
    that accepts and never answers), and no other credentials."""
    if kind == "gs":
        adc = service_account_file(tmp_path / "adc.json", f"{endpoint}/token")
        return {"GOOGLE_APPLICATION_CREDENTIALS": str(adc), "STORAGE_EMULATOR_HOST": ""}
    if kind == "s3":
        # IRSA: AssumeRoleWithWebIdentity at STS, the first thing a signed call needs.
        token = tmp_path / "token"
        token.write_text("eyJ.test.token")
        return {
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/sync",
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
            "AWS_ENDPOINT_URL_STS": endpoint,
            **no_aws_credentials(tmp_path),
        }
    # A managed identity (App Service's endpoint form), asked for a token by the
    # SDK's listing and by the engine's bearer reads.
    return {
        "IDENTITY_ENDPOINT": f"{endpoint}/msi/token",
        "IDENTITY_HEADER": "x",
        "AZURE_STORAGE_CONNECTION_STRING": "",
    }


_HUNG_SOURCES = {
    "gs": ("gs://b-hung/models/ranker", ""),
    "s3": ("s3://b-hung/models/ranker", ""),
    # https: azure-core refuses a bearer token over http before asking for one.
    "az": (
        "az://acct/c-hung/models/ranker",
        '[models.source_options]\naccount_url = "https://127.0.0.1:9/acct"\n',
    ),
}


@pytest.mark.parametrize("kind", ["gs", "s3", "az"])
def test_a_hung_token_endpoint_ends_the_pass_at_its_deadline(tmp_path: Path, kind: str) -> None:
    """A credential refresh whose token endpoint accepts and never answers: `modelsync
    sync` ends at pass_timeout (3 s) with one line and a non-zero exit, instead of
    waiting out the auth library's own timeouts (google-auth: 120 s per try; botocore's
    STS client: 60 s reads, retried; azure-identity: azure-core's 300 s reads)."""
    endpoint = ForwardProxy(hang=True).start()
    config = tmp_path / "c.toml"
    source, options = _HUNG_SOURCES[kind]
    config.write_text(
        f'store = "{tmp_path / "models"}"\npass_timeout = "3s"\n'
        f'[[models]]\nname = "ranker"\nsource = "{source}"\n{options}'
    )
    started = time.monotonic()
    try:
        env = _hung_credentials_env(kind, f"http://127.0.0.1:{endpoint.port}", tmp_path)
        out = run_cli("sync", "--config", str(config), env=env, timeout=60)
    finally:
        endpoint.stop()
    elapsed = time.monotonic() - started
    print(f"{kind}: {elapsed:.1f} s, {len(endpoint.requests)} token requests: {out.stderr.strip()}")
    assert endpoint.requests, "the credential chain never asked the token endpoint"
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pass deadline exceeded" in lines[0], out.stderr
    assert elapsed < 3 + 8, elapsed  # the child's start-up, then the 3 s deadline
