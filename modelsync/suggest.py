"""What to write instead: the hints that configuration and usage errors end with.

One place, so that every "unknown key" and every bad URL gets the same help whether
it came from the configuration model, a method's options or a command's argument.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["schemeless_url_hint", "unknown_key"]


def unknown_key(key: str, known: Iterable[str]) -> str:
    """ "unknown key" and the nearest known key, or the known keys when none is near."""
    names = sorted(set(known))
    near = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if near:
        return f"unknown key; did you mean {near[0]!r}?"
    if names:
        return "unknown key; the keys here are " + ", ".join(names)
    return "unknown key"


def schemeless_url_hint(url: str) -> str | None:
    """For a local path given where a URL belongs (``bucket/m``, ``/data/m``,
    ``file://bucket/m``): the file:// URL meant, with its absolute path."""
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc:
        path = Path(parts.netloc + parts.path)
    elif "://" not in url and not parts.scheme:
        path = Path(url)
    else:
        return None
    absolute = path.expanduser().absolute()
    return (
        f"{url!r} is not a URL: for a local directory write file://{absolute} "
        "(file:// and an absolute path); for a bucket gs://bucket/prefix/model, "
        "s3://bucket/prefix/model or az://account/container/prefix/model"
    )
