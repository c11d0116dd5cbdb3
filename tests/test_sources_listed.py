"""The checksums a listing named (sources/listed.py): kept per version by the source
that listed, and standing in for an answer that carries none, on every network
backend's real API server behind a proxy that lies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import IntegrityError
from modelsync.outcome import PassResult
from modelsync.retry import RetryPolicy
from modelsync.sources.listed import ListedChecksums, expected_checksum
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.backends import NetworkBackend
from tests.helpers import check_invariants
from tests.rewriteproxy import Answer, Rewrite, RewriteProxy

FAST_RETRY = RetryPolicy(attempts=3, initial=0.01, maximum=0.05, total=30)
# What a store's answer says of its bytes' checksum, on gs, s3 and az.
_CHECKSUM_HEADERS = ("x-goog-hash", "etag", "content-md5")


def test_the_latest_listing_of_each_version_is_kept_for_four_versions() -> None:
    """A new listing of a prefix replaces the old one; a fifth prefix drops the
    least recently listed."""
    listed = ListedChecksums()
    listed.remember("m/1/", {"m/1/a": "x"})
    listed.remember("m/1/", {"m/1/a": "y"})
    assert listed.get("m/1/", "m/1/a") == "y"
    for version in range(2, 6):
        listed.remember(f"m/{version}/", {f"m/{version}/a": str(version)})
    assert listed.get("m/1/", "m/1/a") is None
    assert listed.get("m/5/", "m/5/a") == "5"
    assert listed.get("m/5/", "m/5/b") is None


def test_the_answer_and_the_listing_disagreeing_is_a_replaced_object() -> None:
    """The answer's checksum wins when it agrees; the listed one stands in when the
    answer has none; the two disagreeing is one transient line naming both."""
    assert expected_checksum("gs://b/k", "crc32c", "AAAA", None) == "AAAA"
    assert expected_checksum("gs://b/k", "crc32c", None, "BBBB") == "BBBB"
    assert expected_checksum("gs://b/k", "crc32c", None, None) is None
    with pytest.raises(IntegrityError, match=r"gs://b/k: replaced since it was listed"):
        expected_checksum("gs://b/k", "crc32c", "AAAA", "BBBB")


def test_marker_mode_checks_an_answer_without_its_checksum_against_the_listing(
    tmp_path: Path, network_backend: NetworkBackend
) -> None:
    """complete_marker mode (no manifest: the store's checksum is all that protects
    the bytes). An answer with its body changed (same length) and every checksum
    header dropped fails the pass in one line and serves nothing; through an
    honest proxy the next pass serves the real bytes."""
    weights = b"the real weights " * 300
    network_backend.put("5/weights.bin", weights)
    network_backend.put("5/_SUCCESS", b"done")
    lying = [True]

    def hook(method: str, path: str, _headers: dict[str, str]) -> Rewrite | None:
        if not (lying[0] and method == "GET" and "weights.bin" in path):
            return None

        def rewrite(status: int, headers: list[tuple[str, str]], body: bytes) -> Answer:
            kept = [
                (k, v)
                for k, v in headers
                if k.lower() not in _CHECKSUM_HEADERS and not k.lower().startswith("x-amz-checksum")
            ]
            return status, kept, b"EVIL" + body[4:]

        return rewrite

    failed = _lied_to_then_honest(tmp_path, network_backend, hook, lying, weights)
    assert failed.outcome is Outcome.FAILED, failed
    assert "weights.bin" in (failed.error or "") and "checksum mismatch" in (failed.error or "")


# What each store's answer may say to excuse its bytes from their checksum: a GCS
# object stored gzip-encoded (its crc32c is of the compressed bytes), an S3 object
# under SSE-KMS (its ETag is no MD5). Azure has no such header.
_EXCUSES = {
    "gs": ("X-Goog-Stored-Content-Encoding", "gzip"),
    "s3": (
        "x-amz-server-side-encryption",
        "aws:kms",
    ),
}
# A listing's checksum of each object: GCS JSON, S3 and Azure XML.
_LISTED = (
    rb'"crc32c": ?"[^"]*",?',
    rb"<ETag>[^<]*</ETag>",
    rb"<Content-MD5>[^<]*</Content-MD5>",
)


@pytest.mark.parametrize("lie", ["excused", "nothing-listed"])
def test_marker_mode_serves_no_bytes_that_no_checksum_vouched_for(
    tmp_path: Path, network_backend: NetworkBackend, lie: str
) -> None:
    """complete_marker mode, a body changed (same length) and its checksum headers
    dropped, and then either the answer saying its checksum does not apply (gs:
    stored gzip-encoded, s3: SSE-KMS) or the listing naming no checksum either (every
    store). Nothing vouched for the bytes, so the pass serves nothing and says so in
    one line, without refusing the revision: through an honest proxy the next pass
    serves the real bytes."""
    import re

    if lie == "excused" and network_backend.name not in _EXCUSES:
        pytest.skip(f"{network_backend.name}: no answer header excuses a checksum")
    weights = b"the real weights " * 300
    network_backend.put("5/weights.bin", weights)
    network_backend.put("5/_SUCCESS", b"done")
    lying = [True]

    def hook(method: str, path: str, _headers: dict[str, str]) -> Rewrite | None:
        if not (lying[0] and method == "GET"):
            return None
        if "weights.bin" in path:

            def altered(status: int, headers: list[tuple[str, str]], body: bytes) -> Answer:
                kept = [
                    (k, v)
                    for k, v in headers
                    if k.lower() not in _CHECKSUM_HEADERS
                    and not k.lower().startswith("x-amz-checksum")
                ]
                if lie == "excused":
                    kept.append(_EXCUSES[network_backend.name])
                return status, kept, b"EVIL" + body[4:]

            return altered
        if lie == "nothing-listed":

            def unlisted(status: int, headers: list[tuple[str, str]], body: bytes) -> Answer:
                for pattern in _LISTED:
                    body = re.sub(pattern, b"", body)
                kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
                return status, [*kept, ("Content-Length", str(len(body)))], body

            return unlisted
        return None

    failed = _lied_to_then_honest(tmp_path, network_backend, hook, lying, weights)
    assert "weights.bin: no checksum verified these bytes" in (failed.error or ""), failed.error


def _lied_to_then_honest(
    tmp_path: Path,
    backend: NetworkBackend,
    hook: Callable[[str, str, dict[str, str]], Rewrite | None],
    lying: list[bool],
    weights: bytes,
) -> PassResult:
    """Revision 5 of a complete_marker model synced once through ``hook`` lying, then
    once honestly (``lying[0]`` cleared): the first pass's result, after checking that
    it served nothing and that the honest pass served ``weights``."""
    proxy = RewriteProxy(f"http://127.0.0.1:{backend.port}", hook)
    model = ModelConfig(
        name="ranker",
        source=backend.url,
        source_options=backend.options(proxy.url),
        complete_marker="_SUCCESS",
        settle=0,
    )
    syncer = Syncer(Store(tmp_path / "store", tmp_path / ".state"), retry=FAST_RETRY)
    try:
        failed = syncer.sync(model, CancelToken())
        served_while_lying = (tmp_path / "store" / "ranker" / "5").exists()
        lying[0] = False
        served = syncer.sync(model, CancelToken())
    finally:
        syncer.close()
        proxy.close()
    assert proxy.rewritten >= 1
    assert failed.active is None and not served_while_lying, failed
    assert (served.outcome, served.active) == (Outcome.ACTIVATED, 5), served.error
    current = tmp_path / "store" / "ranker" / "current"
    assert (current / "weights.bin").read_bytes() == weights
    assert check_invariants(tmp_path / "store", "ranker").violations == []
    return failed
