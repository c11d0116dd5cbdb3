"""Control objects: the small documents a fleet coordinates through, beside revisions.

A model's source holds revisions at ``<source>/<version>/`` and, for fleet rollouts,
two kinds of control object whose names can never be a version:

- ``_channels/<channel>.json``: a release channel's pointer (modelsync.channel),
  read by every sidecar each interval and written by ``modelsync release``;
- ``_reports/<version>/<identity>.json``: what one sidecar's server said about one
  version, and ``_reports/<version>/failed/[<nonce>/]<identity>.json`` beside it when
  that was a failure (modelsync.reports).

Each backend reads them with a conditional GET (nothing but a "not modified" crosses
the network when the tag still matches), writes them with the store's conditional
write (generation / ETag match, or create-only) and lists them with their tags.
A tag is the store's version of the object: a GCS generation, an S3 or Azure ETag,
a file's inode, size and mtime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from modelsync.cancel import CancelToken

__all__ = [
    "UNCHANGED",
    "Control",
    "ControlStore",
    "Unchanged",
    "check_control_key",
    "report_prefix",
]

# ``_channels/prod.json``, ``_reports/12/host-a.json``: plain names only, so a key
# never leaves the model's prefix and never looks like a version.
# A version has up to 19 digits (MAX_VERSION = 2**63 - 1, a nanosecond timestamp);
# a failure marker may sit under its canary's nonce (modelsync.reports).
_KEY = re.compile(
    r"^(_channels/[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.json"
    r"|_reports/[1-9][0-9]{0,18}/"
    r"((failed/([0-9a-f]{16}/)?)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.json)?)$"
)


@dataclass(frozen=True)
class Control:
    """A control object as read: its bytes and the store's tag for them."""

    data: bytes
    tag: str


class Unchanged:
    """The object still has the tag the caller gave: nothing was downloaded."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()


class ControlStore(Protocol):
    """The control-object calls of a Source (all a channel follower needs)."""

    url: str

    def get_control(
        self, key: str, limit: int, tag: str | None = None, cancel: CancelToken | None = None
    ) -> Control | Unchanged | None:
        """The object, UNCHANGED when it still has ``tag`` (a conditional GET), None when
        it does not exist. RefusedError past ``limit``."""
        ...

    def put_control(self, key: str, data: bytes, *, match: str | None = None) -> str:
        """Write it; return its new tag. ``match``: only if the object still has this
        tag ("" = only if it does not exist), else PublishConflict."""
        ...

    def list_control(self, prefix: str, cancel: CancelToken | None = None) -> dict[str, str]:
        """The control objects under ``prefix`` (a report prefix), recursively: key -> tag."""
        ...


def check_control_key(key: str) -> str:
    """``key`` if it is a channel pointer, a report or a report prefix; else ValueError."""
    if not _KEY.match(key):
        raise ValueError(f"not a control object key: {key!r}")
    return key


def report_prefix(version: int) -> str:
    return f"_reports/{version}/"
