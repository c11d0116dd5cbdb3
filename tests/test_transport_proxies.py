"""Proxies: the transfer engine takes the road the storage SDKs take (HTTP(S)_PROXY,
NO_PROXY), checked against requests' own choice, and end to end with the real CLI
through a forward proxy in front of each store's real API server."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.errors import Cancelled, ConfigError, SourceError
from modelsync.transport.engine import Engine
from modelsync.transport.proxies import Proxy, choose, environ_proxies
from tests.backends import NetworkBackend, put_objects, shard_files
from tests.forwardproxy import ForwardProxy
from tests.helpers import run_cli
from tests.httpstub import http_stub
from tests.tlsorigin import tls_origin

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable of the machine leaks into a test, in either case."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.fixture
def forward() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy().start()
    yield proxy
    proxy.stop()


# (environment, URL): each row is a NO_PROXY / case / scheme rule requests applies.
CASES = [
    ({"HTTPS_PROXY": "http://p:3128"}, "https://storage.googleapis.com/o"),
    ({"HTTPS_PROXY": "http://p:3128"}, "http://storage.googleapis.com/o"),
    ({"HTTP_PROXY": "p:3128"}, "http://127.0.0.1:9000/b"),
    ({"ALL_PROXY": "http://all:1"}, "https://s3.amazonaws.com/b"),
    ({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}, "https://x.com/"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://x.com/"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*,foo.com"}, "https://x.com/"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, "https://api.example.com/"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.com"}, "https://api.example.com/"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.com"}, "https://example.com/"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, "https://badexample.com/"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.org"}, "https://example.com/"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com:8443"}, "https://example.com:8443/"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com:8443"}, "https://example.com/"),
    ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1"}, "http://127.0.0.1:9000/"),
    ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "http://10.2.3.4:9000/"),
    ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "http://11.2.3.4:9000/"),
    ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1:9000"}, "http://127.0.0.1:9000/"),
    ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "localhost, 127.0.0.1"}, "http://localhost:1/"),
    ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "x", "no_proxy": ""}, "http://x/"),
    ({"HTTPS_PROXY": "http://p:1", "https_proxy": ""}, "https://x.com/"),
]


@pytest.mark.parametrize(("env", "url"), CASES)
def test_the_choice_is_the_one_requests_makes(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], url: str
) -> None:
    """Same environment, same URL: the engine's proxy is the one requests (and so the
    gs and az SDKs; botocore copies its rules) would use, or both go direct."""
    import requests.utils

    for name, value in env.items():
        clean_env.setenv(name, value)
    expected = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    assert choose(url, environ_proxies()) == expected


def test_proxy_credentials_become_a_header_and_leave_the_url() -> None:
    """user:password@ (percent-encoded) is a Proxy-Authorization header; the URL kept
    (and shown in errors) has no password; a SOCKS proxy is refused in one line."""
    proxy = Proxy.parse("http://svc%40corp:p%3Ass@proxy.corp:3128")
    assert proxy.url == "http://proxy.corp:3128"
    assert proxy.headers == {"proxy-authorization": "Basic c3ZjQGNvcnA6cDpzcw=="}
    assert Proxy.parse("proxy.corp").url == "http://proxy.corp:80"
    with pytest.raises(ConfigError, match=r"socks5://proxy\.corp: only http") as info:
        Proxy.parse("socks5://u:secret@proxy.corp:1080")
    assert "secret" not in str(info.value)


def _engine(clean_env: pytest.MonkeyPatch, **env: str) -> Engine:
    for name, value in env.items():
        clean_env.setenv(name, value)
    return Engine(pool_size=4, connect_timeout=5, read_timeout=5)


def test_a_refused_connect_tunnel_names_the_proxy_not_its_password(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """https through a proxy that wants other credentials: the CONNECT's 407 is one
    SourceError (not retried) naming the proxy, never the password."""
    proxy = ForwardProxy(credentials=("svc", "right")).start()
    engine = _engine(clean_env, HTTPS_PROXY=proxy.url("svc", "wrong-secret"))
    try:
        with pytest.raises(SourceError) as info:
            engine.get("https://store.invalid/o", {}, bytearray().extend, None, "gs://b/o")
    finally:
        engine.close()
        proxy.stop()
    message = str(info.value)
    assert message == (
        f"gs://b/o: proxy http://127.0.0.1:{proxy.port} refused the credentials in its URL "
        "(HTTP 407)"
    ), message
    assert proxy.requests == [("CONNECT", "store.invalid:443")]
    assert proxy.authorizations[0] is not None


def test_a_connect_tunnel_that_hangs_ends_at_the_deadline(clean_env: pytest.MonkeyPatch) -> None:
    """A proxy that accepts the CONNECT and never answers is cut at the token's
    deadline, the error naming the proxy."""
    proxy = ForwardProxy(hang=True).start()
    engine = _engine(clean_env, HTTPS_PROXY=proxy.url())
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled, match=f"waiting on proxy http://127.0.0.1:{proxy.port}"):
            engine.get(
                "https://store.invalid/o",
                {},
                bytearray().extend,
                CancelToken(deadline=started + 1.5),
                "gs://b/o",
            )
    finally:
        engine.close()
        proxy.stop()
    assert time.monotonic() - started < 4
    assert proxy.requests == [("CONNECT", "store.invalid:443")]


def test_pools_are_reused_per_proxy_and_host(
    clean_env: pytest.MonkeyPatch, forward: ForwardProxy
) -> None:
    """Four GETs of two origins through one proxy, in absolute form: the bytes arrive,
    and the proxy sees one client connection (urllib3 keeps one pool per proxy for
    http, one per host for CONNECT tunnels)."""
    with http_stub(lambda _m, path, _b: (200, path.encode())) as (base, seen):
        port = base.rsplit(":", 1)[1]
        engine = _engine(clean_env, HTTP_PROXY=forward.url())
        bodies = []
        try:
            for host in ("127.0.0.1", "localhost", "127.0.0.1", "localhost"):
                body = bytearray()
                engine.get(f"http://{host}:{port}/o-{host}", {}, body.extend, None, "o")
                bodies.append(bytes(body))
        finally:
            engine.close()
    assert bodies == [b"/o-127.0.0.1", b"/o-localhost"] * 2
    assert [target for _, target in forward.requests] == [
        f"http://{host}:{port}/o-{host}" for host in ("127.0.0.1", "localhost") * 2
    ]
    assert len(seen) == 4
    assert len(set(forward.peers)) == 1, forward.peers


def test_https_goes_through_a_connect_tunnel(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, forward: ForwardProxy
) -> None:
    """An https:// store behind HTTPS_PROXY: one CONNECT to its host:port, then TLS
    end to end through the tunnel (the proxy never sees the paths), the connection
    reused for the next GET."""
    origin, ca = tls_origin(tmp_path)
    port = origin.server_address[1]
    clean_env.setenv("SSL_CERT_FILE", str(ca))
    engine = _engine(clean_env, HTTPS_PROXY=forward.url())
    bodies = []
    try:
        for path in ("/a", "/b"):
            body = bytearray()
            engine.get(f"https://localhost:{port}{path}", {}, body.extend, None, path)
            bodies.append(bytes(body))
    finally:
        engine.close()
        origin.shutdown()
        origin.server_close()
    assert bodies == [b"/a", b"/b"]
    assert forward.requests == [("CONNECT", f"localhost:{port}")]


# -- the real CLI against each store, through the proxy ---------------------------


def _proxy_env(backend: NetworkBackend, proxy: str, no_proxy: str = "") -> dict[str, str]:
    # Both cases set: a lower-case variable of the machine would win otherwise.
    env = backend.env()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        value = {"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "NO_PROXY": no_proxy}.get(name, "")
        env[name] = env[name.lower()] = value
    return env


def _sync(
    tmp_path: Path, backend: NetworkBackend, env: dict[str, str], timeout: str = "60s"
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{tmp_path / "data" / "models"}"\npass_timeout = "{timeout}"\n'
        f'[[models]]\nname = "ranker"\nsource = "{backend.url}"\n'
    )
    return run_cli("sync", "--config", str(config), env=env)


def _current(tmp_path: Path) -> Path:
    return (tmp_path / "data" / "models" / "ranker" / "current").resolve()


def test_a_sync_through_the_proxy_reads_every_object_through_it(
    tmp_path: Path, network_backend: NetworkBackend, forward: ForwardProxy
) -> None:
    """`modelsync sync` with HTTP_PROXY set: listing, manifest and every object's bytes
    go through the proxy, and the revision is served."""
    files = shard_files(3, 10_000, 21)
    put_objects(network_backend, 7, files)
    out = _sync(tmp_path, network_backend, _proxy_env(network_backend, forward.url()))
    assert out.returncode == 0, out.stderr
    for name, data in files.items():
        assert (tmp_path / "data" / "models" / "ranker" / "7" / name).read_bytes() == data
    assert _current(tmp_path).name == "7"
    for name in files:
        assert forward.seen(network_backend.in_path(f"7/{name}")), (name, forward.requests)
    assert forward.seen(network_backend.in_path("7/")), forward.requests


def test_no_proxy_sends_the_store_direct(
    tmp_path: Path, network_backend: NetworkBackend, forward: ForwardProxy
) -> None:
    """NO_PROXY=127.0.0.1 names the store's host: nothing reaches the proxy."""
    put_objects(network_backend, 3, shard_files(2, 5_000, 22))
    env = _proxy_env(network_backend, forward.url(), no_proxy="127.0.0.1")
    out = _sync(tmp_path, network_backend, env)
    assert out.returncode == 0, out.stderr
    assert _current(tmp_path).name == "3"
    assert forward.requests == []


def test_a_proxy_that_hangs_ends_the_pass_at_its_deadline(
    tmp_path: Path, network_backend: NetworkBackend
) -> None:
    """A proxy that accepts and never answers: the pass ends at pass_timeout with one
    line saying so, the exit is non-zero, the active revision stays."""
    put_objects(network_backend, 1, shard_files(2, 5_000, 23))
    assert _sync(tmp_path, network_backend, network_backend.env()).returncode == 0
    put_objects(network_backend, 2, shard_files(2, 5_000, 24))
    proxy = ForwardProxy(hang=True).start()
    started = time.monotonic()
    try:
        out = _sync(tmp_path, network_backend, _proxy_env(network_backend, proxy.url()), "3s")
    finally:
        proxy.stop()
    elapsed = time.monotonic() - started
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pass deadline exceeded" in lines[0], out.stderr
    assert elapsed < 3 + 8, elapsed  # the child's start-up, then the 3 s deadline
    assert proxy.requests, "the pass never reached the proxy"
    assert _current(tmp_path).name == "1"


def test_a_wrong_proxy_password_is_one_line_naming_the_proxy(
    tmp_path: Path, network_backend: NetworkBackend
) -> None:
    """A proxy that refuses the credentials in HTTP_PROXY: one line naming the proxy
    (host and port), without the password; non-zero exit."""
    put_objects(network_backend, 1, shard_files(1, 5_000, 25))
    proxy = ForwardProxy(credentials=("svc", "right")).start()
    try:
        env = _proxy_env(network_backend, proxy.url("svc", "wrong-secret"))
        out = _sync(tmp_path, network_backend, env)
    finally:
        proxy.stop()
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"proxy http://127.0.0.1:{proxy.port} refused the credentials" in lines[0], lines[0]
    assert "wrong-secret" not in out.stderr + out.stdout
