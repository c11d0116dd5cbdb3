"""The transfer engine against a real HTTP server on loopback, faults from FaultProxy."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.errors import Cancelled, ConfigError, OddAnswer, RefusedError, TransientSourceError
from modelsync.transport.engine import CaBundle, Engine, is_transient, requests_bundle
from modelsync.transport.errors import HttpStatus
from tests.faultproxy import FaultPlan, FaultProxy
from tests.tlsorigin import tls_origin

BODY = bytes(range(256)) * 4096  # 1 MiB: several reads of the engine


class _Origin:
    """Serves BODY at /obj (and below it; a range of it as 206 when one is asked for,
    by Range or x-ms-range), 404 elsewhere, /short declares more than it sends, and
    /elsewhere answers a range with another one; records the client port of every
    request (one port: one reused connection) and the request target as it arrived."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.targets: list[str] = []
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                return None

            def do_GET(self) -> None:
                origin.ports.append(self.client_address[1])
                origin.targets.append(self.path)
                asked = self.headers.get("Range") or self.headers.get("x-ms-range")
                if self.path.startswith(("/obj", "/elsewhere")) and asked:
                    # A ranged GET: 206 and the part (/elsewhere: another part than asked).
                    first, last = (int(n) for n in asked.removeprefix("bytes=").split("-"))
                    if self.path.startswith("/elsewhere"):
                        first, last = first + 5, last + 5
                    part = BODY[first : last + 1]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {first}-{last}/{len(BODY)}")
                    self.send_header("Content-Length", str(len(part)))
                    self.end_headers()
                    self.wfile.write(part)
                elif self.path.startswith("/obj"):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(BODY)))
                    self.end_headers()
                    self.wfile.write(BODY)
                elif self.path == "/short":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(BODY)))
                    self.end_headers()
                    self.wfile.write(BODY[:1000])
                    self.close_connection = True
                else:
                    payload = b"<Error><Code>NoSuchKey</Code></Error>\nsecond line"
                    self.send_response(404)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def origin() -> Iterator[_Origin]:
    server = _Origin()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _engine() -> Engine:
    return Engine(pool_size=4, connect_timeout=5, read_timeout=5)


def test_streams_the_body_hashing_it_and_reuses_the_connection(origin: _Origin) -> None:
    """Every byte reaches the writer and the hashers; three GETs share one connection."""
    engine = _engine()
    for _ in range(3):
        out = io.BytesIO()
        digest = hashlib.sha256()
        headers = engine.get(f"{origin.url}/obj", {}, out.write, CancelToken(), "obj", [digest])
        assert out.getvalue() == BODY
        assert digest.hexdigest() == hashlib.sha256(BODY).hexdigest()
        assert headers["content-length"] == str(len(BODY))
    assert len(set(origin.ports)) == 1
    engine.close()


def test_the_request_target_keeps_its_query_and_the_unsafe_is_encoded(
    origin: _Origin,
) -> None:
    """Path and query reach the store as the pool encodes a target (escapes in upper
    case, as before the direct road); a space or non-ASCII character is %-encoded."""
    engine = _engine()
    for target in ("/obj%2Fm%2F1%2Fpart-0001?alt=media&x=%7e", "/obj b?name=é"):
        out = io.BytesIO()
        engine.get(f"{origin.url}{target}", {}, out.write, CancelToken(), "obj")
        assert out.getvalue() == BODY
    assert origin.targets == ["/obj%2Fm%2F1%2Fpart-0001?alt=media&x=%7E", "/obj%20b?name=%C3%A9"]
    engine.close()


def test_more_origins_than_pools_kept_are_each_served(origin: _Origin) -> None:
    """Six origins through a manager that keeps four pools: an evicted (closed) pool is
    replaced, not reused, and every GET still brings every byte."""
    others = [_Origin() for _ in range(5)]
    engine = _engine()
    try:
        for _ in range(2):
            for server in [origin, *others]:
                out = io.BytesIO()
                engine.get(f"{server.url}/obj", {}, out.write, CancelToken(), "obj")
                assert out.getvalue() == BODY
        assert all(len(server.targets) == 2 for server in [origin, *others])
    finally:
        engine.close()
        for server in others:
            server.server.shutdown()
            server.server.server_close()


def test_an_error_status_is_http_status_with_its_first_line(origin: _Origin) -> None:
    """A 404 is HttpStatus carrying the status and one line of the store's answer."""
    with pytest.raises(HttpStatus) as caught:
        _engine().get(f"{origin.url}/missing", {}, io.BytesIO().write, None, "gs://b/missing")
    assert caught.value.status == 404
    assert str(caught.value) == "gs://b/missing: HTTP 404: <Error><Code>NoSuchKey</Code></Error>"
    assert is_transient(503) and is_transient(429) and not is_transient(404)


def test_a_body_shorter_than_declared_is_a_transient_error(origin: _Origin) -> None:
    """A wrong length (the server hangs up early) is retryable, named, one line."""
    with pytest.raises(TransientSourceError) as caught:
        _engine().get(f"{origin.url}/short", {}, io.BytesIO().write, None, "obj")
    assert "closed by the server" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_a_reset_mid_body_is_a_transient_error(origin: _Origin, kind: str) -> None:
    """A connection reset before or during the body is retryable and names host:port."""
    proxy = FaultProxy(origin.port, FaultPlan(rate=1.0, kinds=(kind,))).start()
    try:
        with pytest.raises(TransientSourceError) as caught:
            _engine().get(f"{proxy.url}/obj", {}, io.BytesIO().write, None, "obj")
    finally:
        proxy.stop()
    assert f"127.0.0.1:{proxy.port}" in str(caught.value)


def test_a_dripping_answer_is_cut_at_the_deadline(origin: _Origin) -> None:
    """One byte every 0.2 s never trips the read timeout; the token's deadline cuts it."""
    proxy = FaultProxy(origin.port, FaultPlan(drip=0.2)).start()
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            _engine().get(
                f"{proxy.url}/obj", {}, io.BytesIO().write, CancelToken().within(1.0), "obj"
            )
    finally:
        proxy.stop()
    assert time.monotonic() - started < 5


def test_a_writer_that_refuses_stops_the_read(origin: _Origin) -> None:
    """The writer's size bound propagates as is, and the next GET still works."""

    class Bounded(io.BytesIO):
        def write(self, data: bytes, /) -> int:  # type: ignore[override]
            if self.tell() + len(data) > 1000:
                raise RefusedError("obj: more than the declared 1000 bytes")
            return super().write(data)

    engine = _engine()
    with pytest.raises(RefusedError):
        engine.get(f"{origin.url}/obj", {}, Bounded().write, None, "obj")
    out = io.BytesIO()
    engine.get(f"{origin.url}/obj", {}, out.write, None, "obj")
    assert out.getvalue() == BODY


# -- what the engine trusts ------------------------------------------------------------


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """An HTTPS origin with a self-signed certificate no system store holds, and that
    certificate; the environment's own trust settings removed."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    server, ca = tls_origin(tmp_path)
    try:
        yield f"https://localhost:{server.server_address[1]}", ca
    finally:
        server.shutdown()
        server.server_close()


def _fetch(engine: Engine, url: str) -> bytes:
    body = bytearray()
    try:
        engine.get(url, {}, body.extend, None, "the object")
    finally:
        engine.close()
    return bytes(body)


def test_a_named_ca_bundle_is_what_the_engine_trusts(tls: tuple[str, Path]) -> None:
    """The bundle a store's SDK is told to trust reaches the engine's GETs; without it
    the same self-signed origin is refused in one line, never read unverified."""
    base, ca = tls
    trusted = Engine(4, 5.0, 5.0, CaBundle.named(str(ca), "REQUESTS_CA_BUNDLE"))
    assert _fetch(trusted, f"{base}/obj") == b"/obj"
    with pytest.raises(TransientSourceError) as refused:
        _fetch(Engine(4, 5.0, 5.0), f"{base}/obj")
    assert "\n" not in str(refused.value)
    assert "certificate" in str(refused.value).lower(), refused.value


def test_requests_bundle_reads_the_variables_in_requests_order(
    tls: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQUESTS_CA_BUNDLE over CURL_CA_BUNDLE, as requests (google-cloud-storage,
    azure-core) reads them; none named: None (the system's store)."""
    _base, ca = tls
    assert requests_bundle() is None
    monkeypatch.setenv("CURL_CA_BUNDLE", str(ca))
    assert requests_bundle() == CaBundle(ca, "CURL_CA_BUNDLE")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.parent))
    assert requests_bundle() == CaBundle(ca.parent, "REQUESTS_CA_BUNDLE")


def test_a_ca_bundle_that_is_not_there_is_a_one_line_config_error(tmp_path: Path) -> None:
    """A bundle named but missing fails with the variable that named it, rather than
    falling back to another store."""
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError) as exc:
        CaBundle.named(str(missing), "AWS_CA_BUNDLE")
    assert str(exc.value) == f"AWS_CA_BUNDLE names {missing}, which does not exist (a CA bundle)"


@pytest.mark.parametrize("header", ["Range", "x-ms-range"])
def test_a_ranged_get_streams_the_206_part_it_asked_for(origin: _Origin, header: str) -> None:
    """A range asked for (HTTP's Range, or Azure's x-ms-range) and answered 206 with the
    matching Content-Range reaches the writer."""
    out = io.BytesIO()
    _engine().get(f"{origin.url}/obj", {header: "bytes=100-4195"}, out.write, None, "obj")
    assert out.getvalue() == BODY[100:4196]


@pytest.mark.parametrize("header", ["Range", "x-ms-range"])
def test_a_ranged_get_answered_with_the_whole_object_is_transient(
    origin: _Origin, header: str
) -> None:
    """A cache that drops the range (the store answers 200, whole) is not what was asked
    for: a retryable error naming the host and the fault, before any byte is written
    (so it never reaches a file, let alone refuses a revision)."""
    proxy = FaultProxy(origin.port, FaultPlan(rate=1.0, kinds=("norange",))).start()
    out = io.BytesIO()
    try:
        with pytest.raises(TransientSourceError) as caught:
            _engine().get(f"{proxy.url}/obj", {header: "bytes=0-99"}, out.write, None, "obj")
    finally:
        proxy.stop()
    text = str(caught.value)
    assert f"127.0.0.1:{proxy.port}" in text and "200" in text and "bytes 0-99" in text, text
    assert caught.value.retryable and "\n" not in text
    assert out.getvalue() == b""
    assert proxy.faults["norange"] == 1


def test_a_range_that_was_the_whole_object_may_come_as_200(origin: _Origin) -> None:
    """A server may ignore Range (RFC 9110): a 200 whose body is exactly the range asked
    for (the whole object) is the bytes asked for."""
    proxy = FaultProxy(origin.port, FaultPlan(rate=1.0, kinds=("norange",))).start()
    out = io.BytesIO()
    try:
        asked = {"Range": f"bytes=0-{len(BODY) - 1}"}
        _engine().get(f"{proxy.url}/obj", asked, out.write, None, "obj")
    finally:
        proxy.stop()
    assert out.getvalue() == BODY and proxy.faults["norange"] == 1


def test_a_206_of_another_range_is_transient(origin: _Origin) -> None:
    """A part other than the one asked for (its Content-Range says so) is not written."""
    out = io.BytesIO()
    with pytest.raises(TransientSourceError, match=r"bytes 105-204/.* to a GET of bytes 100-199"):
        _engine().get(f"{origin.url}/elsewhere", {"Range": "bytes=100-199"}, out.write, None, "x")
    assert out.getvalue() == b""


def test_an_encoded_answer_to_a_request_for_identity_is_transient(origin: _Origin) -> None:
    """A proxy that compresses the body (Content-Encoding: gzip) although identity was
    asked for: retryable once (an odd answer: the same answer again is not waited out),
    one line with the host, nothing written; the engine asks for identity itself when
    the caller did not."""
    proxy = FaultProxy(origin.port, FaultPlan(rate=1.0, kinds=("gzip",))).start()
    out = io.BytesIO()
    try:
        for headers in ({}, {"Accept-Encoding": "identity"}):
            with pytest.raises(TransientSourceError) as caught:
                _engine().get(f"{proxy.url}/obj", headers, out.write, None, "gs://b/o")
            assert "Content-Encoding 'gzip'" in str(caught.value)
            assert isinstance(caught.value, OddAnswer) and caught.value.attempts == 2
            assert f"127.0.0.1:{proxy.port}" in str(caught.value)
    finally:
        proxy.stop()
    assert out.getvalue() == b""
