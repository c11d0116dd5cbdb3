"""Storage backends behind one seam; ``open_source`` picks one by URL scheme.

Backends are imported lazily so that a file:// deployment never pays for the
Google client libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelsync.sources.base import ObjectInfo, Sink, Source

if TYPE_CHECKING:
    from modelsync.sources.gcs import GcsSettings

__all__ = ["SCHEMES", "ObjectInfo", "Sink", "Source", "open_source"]

SCHEMES = frozenset({"file", "gs"})


def open_source(url: str, gcs: GcsSettings | None = None) -> Source:
    """A Source for ``url`` (file:///path or gs://bucket/prefix)."""
    scheme = url.partition("://")[0]
    if scheme == "file":
        from modelsync.sources.local import LocalSource

        return LocalSource(url)
    if scheme == "gs":
        from modelsync.sources.gcs import GcsSettings, GcsSource

        return GcsSource(url, gcs or GcsSettings())
    raise ValueError(f"unsupported source URL {url!r}")
