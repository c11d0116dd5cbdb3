"""Which storage checksum of an S3 object covers its bytes, and checking it (s3.py).

S3 returns a full-object checksum (crc32c, crc32 or sha256) when asked with
x-amz-checksum-mode; a multipart upload's is a checksum of its parts, unless S3 says
FULL_OBJECT. Failing those, a single-part object's ETag is its MD5, except under
SSE-KMS or SSE-C.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from modelsync.errors import IntegrityError
from modelsync.sources.base import Hasher
from modelsync.sources.listed import expected_checksum

__all__ = ["Checks"]


class _Crc:
    """zlib.crc32 or crc32c as a hasher whose digest is S3's: 4 bytes, big-endian."""

    def __init__(self, castagnoli: bool) -> None:
        self._value = 0
        self._castagnoli = castagnoli

    def update(self, data: bytes, /) -> None:
        if self._castagnoli:
            import google_crc32c

            self._value = google_crc32c.extend(self._value, data)
        else:
            self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


class Checks:
    """The storage checksums an object's headers offer, fed as its bytes arrive."""

    def __init__(self, headers: Mapping[str, str], listed_etag: str | None = None) -> None:
        """``listed_etag``: the object's ETag in the latest listing (sources/listed.py),
        which stands in for an answer that carries none."""
        self._pending: list[tuple[str, Any, str]] = []
        get = {k.lower(): v for k, v in headers.items()}.get
        sent, listed = get("etag", "").strip('"') or None, (listed_etag or "").strip('"') or None
        self._etags = sent, listed
        etag = sent or listed or ""
        # A multipart upload's checksum is of its parts ("composite") unless S3 says
        # FULL_OBJECT; S3-compatible stores (and moto) may omit both the type and the
        # "-N" suffix, so a multipart ETag ("...-N") alone rules the checksum out.
        kind = get("x-amz-checksum-type", "").upper()
        composite = kind == "COMPOSITE" or ("-" in etag and kind != "FULL_OBJECT")
        makers: dict[str, Callable[[], Any]] = {
            "crc32c": lambda: _Crc(castagnoli=True),
            "crc32": lambda: _Crc(castagnoli=False),
            "sha256": hashlib.sha256,
        }
        for name, make in makers.items():
            value = get(f"x-amz-checksum-{name}")
            # A multipart upload's composite checksum ("...-N") covers parts, not bytes.
            if value and "-" not in value and not composite:
                self._pending.append((name, make(), value))
                return
        encrypted = get("x-amz-server-side-encryption", "").startswith("aws:kms") or get(
            "x-amz-server-side-encryption-customer-algorithm"
        )
        if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) and not encrypted:
            self._pending.append(("md5", hashlib.md5(usedforsecurity=False), etag))

    @property
    def hashers(self) -> list[Hasher]:
        return [hasher for _, hasher, _ in self._pending]

    def check(self, what: str) -> str | None:
        """IntegrityError when a checksum differs; else the name of the one compared,
        or None when the headers offered none that covers the whole object."""
        expected_checksum(what, "ETag", *self._etags)
        for name, hasher, expected in self._pending:
            digest = hasher.digest()
            actual = digest.hex() if name == "md5" else base64.b64encode(digest).decode()
            if actual != expected:
                raise IntegrityError(
                    f"{what}: {name} checksum mismatch: damaged in transit; "
                    "the next pass downloads it again"
                )
        return self._pending[0][0] if self._pending else None
