"""The header parser without the email package: the same message as http.client's for
any header block, and the one every pool's responses use, against a raw server."""

from __future__ import annotations

import http.client
import io
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelsync.transport.engine import Engine
from modelsync.transport.headers import Response, parse_headers

_NAMES = st.sampled_from(
    ["Content-Length", "X-Goog-Hash", "ETag", "x-ms-meta-a", "A", "Set-Cookie"]
)
_TOKEN = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=12)
# Values as a server may send them, bytes 0x80-0xff (read as latin-1) included.
_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=24)
_ODD = st.sampled_from(
    [
        " folded continuation\r\n",  # obs-fold: belongs to the line before
        "\tfolded with a tab\r\n",
        "no colon here\r\n",
        "Bare: carriage\rreturn\r\n",
        "Space Name: value\r\n",
        ": empty name\r\n",
        "From someone@example.com\r\n",
        "\r",
        "Lf-Only: value\n",
        "Trailing: spaces   \r\n",
        "Tabs:\t\tvalue\r\n",
        "Empty:\r\n",
    ]
)


def _line(name: str, value: str) -> str:
    return f"{name}: {value}\r\n"


_LINES = st.lists(
    st.one_of(
        st.builds(_line, _NAMES, _VALUE),
        st.builds(_line, _TOKEN.filter(lambda t: ":" not in t and t != ""), _VALUE),
        _ODD,
    ),
    max_size=14,
)


def _both(block: bytes) -> tuple[http.client.HTTPMessage, http.client.HTTPMessage]:
    return http.client.parse_headers(io.BytesIO(block)), parse_headers(io.BytesIO(block))


@settings(max_examples=400, deadline=None)
@given(lines=_LINES, end=st.sampled_from(["\r\n", "\n", ""]), rest=st.binary(max_size=8))
def test_any_header_block_parses_to_what_http_client_makes_of_it(
    lines: list[str], end: str, rest: bytes
) -> None:
    block = ("".join(lines) + end).encode("latin-1") + (rest if end else b"")
    stdlib, ours = _both(block)
    assert ours.items() == stdlib.items()
    assert [type(d) for d in ours.defects] == [type(d) for d in stdlib.defects]
    assert bool(ours.get_payload()) == bool(stdlib.get_payload())
    # Both stop where the block ends: the body's first byte is the next one read.
    stream_a, stream_b = io.BytesIO(block), io.BytesIO(block)
    http.client.parse_headers(stream_a)
    parse_headers(stream_b)
    assert stream_b.read() == stream_a.read()


def test_a_store_answer_keeps_every_header_and_its_duplicates() -> None:
    block = (
        b"X-Goog-Hash: crc32c=n03x6A==\r\nX-Goog-Hash: md5=1B2M2Y8AsgTpgAmY7PhCfg==\r\n"
        b'Content-Length: 102400\r\nETag: "abc"\r\nx-ms-meta-a: caf\xe9 \r\n\r\nBODY'
    )
    message = parse_headers(io.BytesIO(block))
    assert message.get_all("x-goog-hash") == ["crc32c=n03x6A==", "md5=1B2M2Y8AsgTpgAmY7PhCfg=="]
    assert message["content-length"] == "102400"
    assert message["x-ms-meta-a"] == "caf\xe9 "  # latin-1, trailing blank kept


def test_the_bounds_are_http_clients() -> None:
    many = b"".join(b"H%d: v\r\n" % i for i in range(101)) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        parse_headers(io.BytesIO(many))
    long = b"H: " + b"v" * 70000 + b"\r\n\r\n"
    with pytest.raises(http.client.LineTooLong):
        parse_headers(io.BytesIO(long))


def test_the_response_class_runs_the_standard_begin_with_this_parser() -> None:
    # On this Python the swap took: begin is CPython's code, its parser is ours.
    assert Response.begin is not http.client.HTTPResponse.begin
    assert Response.begin.__code__ is http.client.HTTPResponse.begin.__code__
    assert Response.begin.__globals__["parse_headers"] is parse_headers


class _RawOrigin:
    """Answers every request on a connection with the same raw bytes, kept alive."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            seen = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                seen += data
                while b"\r\n\r\n" in seen:
                    _, seen = seen.split(b"\r\n\r\n", 1)
                    conn.sendall(self.answer)


_CLEAN = b"X-Goog-Hash: crc32c=a\r\nX-Goog-Hash: md5=b\r\nX-Plain: first second\r\n"
# A folded line sends the block to http.client's parser; urllib3 unfolds it.
_FOLDED = b"X-Goog-Hash: crc32c=a\r\nX-Goog-Hash: md5=b\r\nX-Plain: first\r\n  second\r\n"


@pytest.fixture(params=[_CLEAN, _FOLDED], ids=["clean", "folded"])
def raw_origin(request: pytest.FixtureRequest) -> Iterator[_RawOrigin]:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n" + request.param + b"\r\n"
    origin = _RawOrigin(head + b"x" * 1000)
    yield origin
    origin.listener.close()


def test_the_engine_reads_answers_through_it(raw_origin: _RawOrigin) -> None:
    engine = Engine(pool_size=2, connect_timeout=5, read_timeout=5)
    try:
        for _ in range(2):  # the second answer on the same connection: the body ended right
            got = bytearray()
            url = f"http://127.0.0.1:{raw_origin.port}/o"
            headers = engine.get(url, {}, got.extend, None, "object o")
            assert bytes(got) == b"x" * 1000
            assert headers.get("x-goog-hash") == "crc32c=a, md5=b"
            assert headers.get("x-plain") == "first second"
        _proxy, pool, _target = engine._routes.route(url)
        assert issubclass(pool.ConnectionCls.response_class, Response)
    finally:
        engine.close()
