"""What modelsync itself verified on local disk: file identities whose bytes it hashed.

Admission (modelsync.sync.admit) proves that a tree equals its manifest every time
the tree enters the served directory. Hashing a retained revision of 10 GB again
costs tens of seconds; a file whose identity — device, inode, size, mtime_ns and
ctime_ns — is what it was when modelsync hashed it cannot hold other bytes since:
every write moves mtime and ctime, and ctime cannot be set back (utimes sets it to
now). So a record binds a sha256 to that identity, and a file that matches its
record is not hashed again; any other file is.

Records are per inode: the copies of one file that revisions share through hard
links (transfer.py links unchanged files) share one record. Linking changes ctime,
so the linker records the file again after linking. The file lives in the state
directory (modelsync's own); a malformed one is treated as empty, never as partly
trusted. Bounded: the records touched most recently are kept.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from modelsync.errors import StoreError
from modelsync.fsutil import atomic_write_bytes, read_regular

__all__ = ["MAX_RECORDS", "FileIdentity", "VerifiedFiles", "identity"]

# A record is ~130 bytes: 200,000 of them (two retained revisions of a 100,000-file
# model) are ~26 MB on disk.
MAX_RECORDS = 200_000
_MAX_BYTES = 64 * 1024 * 1024


class FileIdentity(Protocol):
    """What a record binds: an ``os.stat_result``, or the five fields of one kept
    alone (admission keeps these for every file of a tree: a whole stat result is
    about 640 bytes, 64 MB for a 100,000-file revision)."""

    @property
    def st_dev(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...
    @property
    def st_ctime_ns(self) -> int: ...


def identity(st: FileIdentity) -> tuple[str, tuple[int, int, int]]:
    """The record key (device and inode) and what must not have changed."""
    return f"{st.st_dev}:{st.st_ino}", (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class VerifiedFiles:
    """The records of one model; load, consult and record, then save once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: OrderedDict[str, tuple[int, int, int, str]] = OrderedDict()
        self._dirty = False

    @classmethod
    def load(cls, path: Path) -> VerifiedFiles:
        verified = cls(path)
        try:
            doc = json.loads(read_regular(path, _MAX_BYTES))
        except FileNotFoundError:
            return verified
        except (StoreError, ValueError, RecursionError):
            verified._dirty = True  # rewritten whole at the next save
            return verified
        if not isinstance(doc, dict):
            return verified
        for key, value in doc.items():
            if (
                isinstance(key, str)
                and isinstance(value, list)
                and len(value) == 4
                and all(type(v) is int for v in value[:3])
                and isinstance(value[3], str)
            ):
                verified._records[key] = (value[0], value[1], value[2], value[3])
        return verified

    def known(self, st: FileIdentity, sha256: str) -> bool:
        """Whether the file with this stat was hashed by modelsync as ``sha256`` and has
        not changed since."""
        key, ident = identity(st)
        record = self._records.get(key)
        if record is None or record[:3] != ident or record[3] != sha256:
            return False
        self._records.move_to_end(key)
        self._dirty = True
        return True

    def record(self, st: FileIdentity, sha256: str) -> None:
        """The file with this stat holds bytes whose sha256 modelsync just computed."""
        key, ident = identity(st)
        self._records[key] = (*ident, sha256)
        self._records.move_to_end(key)
        while len(self._records) > MAX_RECORDS:
            self._records.popitem(last=False)
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        # The records as they are (a tuple is written as a list): a copy of 200,000
        # of them as lists first was 35 MB more at the peak of a large admission.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(self._records, separators=(",", ":")).encode())
        self._dirty = False
