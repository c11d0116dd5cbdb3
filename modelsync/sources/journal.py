"""Which blocks of a partial download are complete: a small append-only journal.

A large file is fetched as ranges written in place (ranges.py), each cut into blocks
of up to 1 MiB. Each completed block is appended here as ``start length crc32c``
once its bytes are written (one line per block, in any order), so a download cut by
kill -9, a deadline, a dropped connection or a full disk resumes with the blocks it
already has. Nothing in the journal is trusted: a kept block is read back
and its crc32c compared before it counts (a torn last line, a power loss that lost
written pages, or a file changed on disk all just mean "fetch it again"), and the
whole file is still checked against the manifest's sha256 before it is used.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from modelsync.errors import StoreError
from modelsync.fsutil import read_regular, remove_entry, store_error
from modelsync.sources.crc32c import extend

__all__ = ["RangeJournal", "range_crc", "range_matches"]

_MAGIC = "modelsync-ranges 2"
# Reads of kept blocks being checked: a dozen may run at once (memory budget).
_READ = 256 * 1024
# A line per completed block (about 35 bytes): room for a million blocks.
_JOURNAL_LIMIT = 40 << 20


class RangeJournal:
    """The completed blocks of one partial file, for one object size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def kept(self, size: int) -> dict[int, tuple[int, int]]:
        """start → (length, crc32c) of the blocks recorded for an object of ``size``
        bytes; a journal written for another size is started over."""
        header = f"{_MAGIC} {size}"
        try:
            raw = read_regular(self.path, _JOURNAL_LIMIT)
            lines = raw.decode(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        except StoreError:
            # Not a regular file of ours (a link, a FIFO, grown past reason): dropped,
            # and the download starts over, rather than failing every pass.
            remove_entry(self.path)
            lines = []
        if not lines or lines[0] != header:
            self._start(header)
            return {}
        ranges: dict[int, tuple[int, int]] = {}
        for line in lines[1:]:
            fields = line.split()
            # A torn or damaged line (a crash mid-append) is skipped, never trusted.
            if len(fields) != 3 or not all(f.isdigit() for f in fields):
                continue
            start, length, crc = (int(f) for f in fields)
            if length > 0 and start + length <= size:
                ranges[start] = (length, crc)
        self._open()
        return ranges

    def record(self, start: int, length: int, crc: int) -> None:
        """Append one completed block (one write on an O_APPEND descriptor: lines from
        parallel ranges never interleave)."""
        with self._lock:
            if self._fd is None:
                return
            try:
                os.write(self._fd, f"{start} {length} {crc}\n".encode())
            except OSError as exc:
                raise store_error("write", self.path, exc) from exc

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None

    def _start(self, header: str) -> None:
        try:
            # A FIFO planted here fails the open (ENXIO) instead of holding it.
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK
            fd = os.open(self.path, flags, 0o644)
            try:
                os.write(fd, (header + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise store_error("write", self.path, exc) from exc
        self._open()

    def _open(self) -> None:
        with self._lock:
            if self._fd is None:
                try:
                    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
                    self._fd = os.open(self.path, flags)
                except OSError as exc:
                    raise store_error("open", self.path, exc) from exc


def range_matches(fd: int, start: int, length: int, crc: int) -> bool:
    """Whether the ``length`` bytes at ``start`` in ``fd`` still have checksum ``crc``."""
    return range_crc(fd, start, length) == crc


def range_crc(fd: int, start: int, length: int) -> int | None:
    """The crc32c of the ``length`` bytes at ``start`` in ``fd``; None if it ends first."""
    value, offset, end = 0, start, start + length
    while offset < end:
        chunk = os.pread(fd, min(_READ, end - offset), offset)
        if not chunk:
            return None
        value = extend(chunk, value)
        offset += len(chunk)
    return value
