"""What a store's listing said of each object's checksum, kept by the source that listed.

A store's answer to a GET normally carries the object's checksum (GCS X-Goog-Hash,
S3 ETag or x-amz-checksum-*, Azure Content-MD5), and the backends check the bytes
against it. An answer without one is not an answer with nothing to check: the
listing read moments before (a complete_marker revision is described by it) named
the checksum, so the bytes are checked against that; and an answer whose checksum
disagrees with the listing's is of an object replaced since it was listed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

from modelsync.errors import IntegrityError

__all__ = ["ListedChecksums", "expected_checksum"]

# Versions whose listing a source keeps: a pass lists one, a complete_marker
# candidate lists its version two or three times while it settles.
_KEPT = 4


class ListedChecksums:
    """Object key -> checksum, per listed prefix, for the last few prefixes listed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_prefix: OrderedDict[str, dict[str, str]] = OrderedDict()

    def remember(self, prefix: str, checksums: Mapping[str, str]) -> None:
        """The listing of ``prefix`` just read: ``checksums`` by object key."""
        with self._lock:
            self._by_prefix[prefix] = dict(checksums)
            self._by_prefix.move_to_end(prefix)
            while len(self._by_prefix) > _KEPT:
                self._by_prefix.popitem(last=False)

    def get(self, prefix: str, key: str) -> str | None:
        with self._lock:
            return self._by_prefix.get(prefix, {}).get(key)


def expected_checksum(what: str, kind: str, sent: str | None, listed: str | None) -> str | None:
    """The ``kind`` checksum the bytes must have: the answer's (``sent``), else the
    ``listed`` one; the two disagreeing means the object was replaced since it was
    listed (a transient error: the next pass lists it again)."""
    if sent is not None and listed is not None and sent != listed:
        raise IntegrityError(
            f"{what}: replaced since it was listed ({kind} {listed} listed, {sent} now); "
            "the next pass lists it again"
        )
    return sent or listed
