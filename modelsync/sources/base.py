"""The source seam: what every storage backend provides (one module each in
modelsync/backends/, found by the registry in modelsync.sources).

A source is the publisher's side of one model: ``<url>/<version>/<object>``. One
contract test suite (tests/test_sources_contract.py) runs against every backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from modelsync.cancel import CancelToken
from modelsync.configbase import NoOptions
from modelsync.errors import Cancelled, RefusedError
from modelsync.fsutil import store_error
from modelsync.sources.control import ControlStore
from modelsync.sources.journal import RangeJournal

__all__ = [
    "Backend",
    "Connections",
    "Hasher",
    "ObjectInfo",
    "OversizeError",
    "Sink",
    "Source",
]


@dataclass(frozen=True)
class ObjectInfo:
    """An object under a version: name relative to the version, size, last change."""

    name: str
    size: int
    updated: datetime
    crc32c: str | None = None  # base64 big-endian, as GCS reports it


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


class OversizeError(RefusedError):
    """More bytes arrived than the manifest declares (transit damage, or the object).
    ``received`` is the sha256 of what arrived, to tell the same bytes from others."""

    def __init__(self, message: str, received: str) -> None:
        super().__init__(message)
        self.received = received


class Sink:
    """Where one object's bytes go: a staging file, hashed as written.

    Writing more than ``expected_size`` bytes raises RefusedError at once, so a
    source that lies about sizes can never fill the disk.
    """

    def __init__(
        self,
        path: Path,
        expected_size: int | None,
        label: str,
        on_bytes: Callable[[int], None] | None = None,
        journal: RangeJournal | None = None,
    ) -> None:
        self.path = path
        self.expected_size = expected_size
        self.label = label
        self.on_bytes = on_bytes
        # With a journal the file may hold ranges of an interrupted download: it is
        # kept for a ranged fetch (fetch_ranges) and truncated by a first streamed write.
        self.journal = journal
        # O_NOFOLLOW: a link planted where a file goes is an error, never followed;
        # O_NONBLOCK: a FIFO planted there cannot hold the open (no cost for a file).
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        flags |= 0 if journal else os.O_TRUNC
        # A bare descriptor, not a file object: the buffered layer adds four syscalls
        # per file (fstat, isatty, two lseek) and a copy of nothing, since every write
        # is a whole network read (docs/transport.md, "Syscalls per small file").
        self._fd: int | None = os.open(path, flags, 0o644)
        self._truncated = journal is None
        self._digest = hashlib.sha256()
        self._sha256_hex = ""  # set by adopt: the digest of bytes written out of band
        # Bytes an interrupted download had kept and that were used again (fetch_ranges).
        self.resumed = 0
        self._written = 0
        # What vouched for the whole object's bytes as they arrived, besides the
        # manifest (vouch). A file with no sha256 (a complete_marker revision) is
        # admitted only when something did (transfer._Fetch): None is the default, so
        # a source that checks nothing, or an answer that talked its check away, can
        # never bring unverified bytes in.
        self.vouched_by: str | None = None

    @property
    def written(self) -> int:
        return self._written

    def write(self, data: bytes) -> int:
        if self.expected_size is not None and self._written + len(data) > self.expected_size:
            received = self._digest.copy()
            received.update(data)
            raise OversizeError(
                f"{self.label}: source sent more than the declared {self.expected_size} bytes",
                received.hexdigest(),
            )
        try:
            fd = self._open()
            if not self._truncated:
                os.ftruncate(fd, 0)
                self._truncated = True
            _write_all(fd, data)
        except OSError as exc:
            raise store_error("write", self.path, exc) from exc
        self._digest.update(data)
        self._written += len(data)
        if self.on_bytes is not None:
            self.on_bytes(len(data))
        return len(data)

    def reset(self) -> None:
        """Start over (a retry re-sends the object from its first byte)."""
        fd = self._open()
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        self._truncated = True
        self._digest = hashlib.sha256()
        self._sha256_hex = ""
        self._written = 0
        self.vouched_by = None

    def vouch(self, by: str | None) -> None:
        """Say that ``by`` vouched for every byte written: the store's checksum of the
        whole object ("crc32c", "md5", ...), compared and matched once the last byte
        arrived, or a local read that crossed no network. Called by a source only
        after the comparison passed; None (nothing was compared) says nothing."""
        if by is not None:
            self.vouched_by = by

    def adopt(self, sha256: str, written: int) -> None:
        """Take the digest and size of bytes written to ``path`` out of band (parallel
        ranged writes, hashed in order as they completed: ranges.fetch_ranges)."""
        os.lseek(self._open(), 0, os.SEEK_END)
        self._sha256_hex = sha256
        self._written = written
        if self.expected_size is not None and written > self.expected_size:
            raise OversizeError(
                f"{self.label}: source sent more than the declared {self.expected_size} bytes",
                sha256,
            )

    def finish(self) -> str:
        """Flush to disk, close, and return the sha256 of what was written."""
        try:
            fd = self._open()
            if not self._sha256_hex and self.journal is not None:
                # Streamed: drop whatever a kept partial file held past what was written
                # (without a journal the file was opened truncated: nothing to drop).
                os.ftruncate(fd, self._written)
            os.fsync(fd)
            self._fd = None
            os.close(fd)
        except OSError as exc:
            raise store_error("write", self.path, exc) from exc
        return self._sha256_hex or self._digest.hexdigest()

    def close(self) -> None:
        """Close without flushing errors: only an abandoned sink is closed this way, and
        its file is removed next (a full disk must not turn into a second error)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _open(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.label}: write to a closed sink")
        return self._fd

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Source(ControlStore, Protocol):
    """One model's revisions in a bucket or directory (and its control objects)."""

    url: str

    def list_versions(self, cancel: CancelToken | None = None) -> list[int]:
        """Every version number present, complete or not, ascending; [] if none.

        Raises NotFoundError when the bucket (or the source directory) is missing, and
        Cancelled once ``cancel`` fires (a network backend cuts a read in flight).
        """
        ...

    def read_object(
        self, version: int, name: str, limit: int, cancel: CancelToken | None = None
    ) -> bytes | None:
        """The whole object, or None when it does not exist.

        Raises RefusedError when it is larger than ``limit`` bytes.
        """
        ...

    def list_objects(self, version: int, cancel: CancelToken | None = None) -> list[ObjectInfo]:
        """Every object under the version, names relative to it; [] if none."""
        ...

    def fetch(self, version: int, name: str, sink: Sink, cancel: CancelToken) -> None:
        """Stream the object into ``sink`` (resetting it before a retry).

        Raises NotFoundError when the object is missing, IntegrityError when a
        storage checksum fails, RefusedError when the sink's size bound fails,
        RefusedError for names or links that leave the revision, Cancelled on stop.
        """
        ...

    def upload(self, version: int, name: str, path: Path, *, exclusive: bool = False) -> None:
        """Store the local file ``path`` as the object; visible only once complete.

        ``exclusive``: only if no such object exists (a conditional write where the
        store has one), else PublishConflict: two publishers cannot both write it.
        """
        ...

    def close(self) -> None:
        """Release connections and threads."""
        ...


T = TypeVar("T")


class Connections:
    """Clients shared by the sources one owner opens (a Syncer, a publish).

    Thousands of models in one bucket should cost one client, not thousands: a boto3
    session with its client measured 13 MB and 0.17 s here, one client 0.35 MB. A
    backend keys its client by its options; the owner closes them all at the end.

    Making a client can be a network call (botocore loads its first credentials from
    an instance or container endpoint), so it runs on a thread of its own, one per
    key, with no lock held: a client whose credential endpoint hangs holds neither
    another key's client nor ``close()``, and each caller waits for it only until its
    own token fires. The next pass waits on the same attempt instead of starting one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[Hashable, tuple[Any, Callable[[Any], None]]] = {}
        self._making: dict[Hashable, _Making] = {}
        self._closes = 0  # bumped by close(): a client made after it is closed at once

    def get(
        self,
        key: Hashable,
        make: Callable[[], T],
        close: Callable[[T], None],
        cancel: CancelToken | None = None,
    ) -> T:
        """The client under ``key``, made by ``make`` the first time; Cancelled once
        ``cancel`` fires while it is being made (the attempt goes on for the next)."""
        with self._lock:
            if key in self._items:
                client: T = self._items[key][0]
                return client
            making = self._making.get(key)
            if making is None:
                making = self._making[key] = _Making(self._closes)
                threading.Thread(
                    target=self._make, args=(key, making, make, close), name="connect", daemon=True
                ).start()
        if cancel is None:
            making.done.wait()
        else:
            while not making.done.wait(0.2):
                cancel.check()
        if making.error is not None:
            raise making.error
        made: T = making.value
        return made

    def _make(self, key: Hashable, making: _Making, make: Callable[[], Any], close: Any) -> None:
        try:
            making.value = make()
        except BaseException as exc:  # handed to every caller waiting for this attempt
            making.error = exc
        closed = False
        with self._lock:
            del self._making[key]
            if making.error is None:
                if making.closes == self._closes:
                    self._items[key] = (making.value, close)
                else:
                    closed = True
                    making.error = Cancelled("stop requested")
        if closed:
            with contextlib.suppress(Exception):
                close(making.value)
        making.done.set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        with self._lock:
            items, self._items = list(self._items.values()), {}
            self._closes += 1
        for client, close in items:
            with contextlib.suppress(Exception):
                close(client)


class _Making:
    """One attempt at making a client, which callers wait for."""

    def __init__(self, closes: int) -> None:
        self.closes = closes
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class Backend:
    """What a backend module declares as ``BACKEND``: its URL forms, its options, and
    how it opens a source. Subclasses override ``parse`` and ``open``."""

    name: str = ""
    schemes: tuple[str, ...] = ()
    # The URL form shown in errors and help, e.g. "gs://bucket/prefix".
    example: str = ""
    options: type[BaseModel] = NoOptions
    # Whether its sources hold control objects (channel pointers, reports).
    control_objects: bool = True

    def holds_control(self, options: BaseModel) -> bool:
        """Whether a source opened with ``options`` holds control objects."""
        return self.control_objects

    def claims(self, url: str) -> bool:
        """Whether this backend serves ``url`` (by default: by scheme)."""
        scheme, sep, _ = url.partition("://")
        return bool(sep) and scheme in self.schemes

    def parse(self, url: str) -> str:
        """``url`` in its normal form; ValueError (one line, saying the form) if malformed."""
        raise NotImplementedError

    def open(self, url: str, options: BaseModel, connections: Connections | None) -> Source:
        """A Source for a URL ``parse`` accepted, with options of ``self.options``;
        clients worth sharing come from ``connections`` (None: the source's own)."""
        raise NotImplementedError

    def watch_root(self, url: str) -> Path | None:
        """A local directory whose file events mean a new revision may be there (the
        optional change-event capability); None: the source is polled only."""
        return None


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data`` at the descriptor's position: os.write may take less (a signal,
    a file-size limit), where the buffered file object's write looped for us."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
