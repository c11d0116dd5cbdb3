"""Storage backends behind one seam; ``open_source`` picks one by URL scheme.

Backends are imported lazily so that a process only pays for the client
libraries of the schemes it uses.
"""

from __future__ import annotations

from modelsync.sources.base import ObjectInfo, Sink, Source

__all__ = ["SCHEMES", "ObjectInfo", "Sink", "Source", "open_source"]

SCHEMES = frozenset({"file", "gs"})


def open_source(url: str) -> Source:
    """A Source for ``url`` (file:///path or gs://bucket/prefix)."""
    scheme = url.partition("://")[0]
    if scheme == "file":
        from modelsync.sources.local import LocalSource

        return LocalSource(url)
    if scheme == "gs":
        from modelsync.sources.gcs import GcsSource

        return GcsSource(url)
    raise ValueError(f"unsupported source URL {url!r}")
