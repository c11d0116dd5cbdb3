"""What the network backends share: transfer options and parallel ranged downloads.

Each network backend (gs, s3, az) fetches an object at least ``range_threshold``
bytes large as byte ranges on ``range_workers`` threads, each range written in
place with pwrite and retried on its own, recorded in the resume journal when the
sink has one; the file is hashed in order (sha256 and the storage's own checksum) as
its ranges complete.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import structlog
from pydantic import BaseModel, ConfigDict, Field

from modelsync.cancel import CancelToken
from modelsync.errors import OddAnswer, RefusedError, SourceError, TransientSourceError
from modelsync.fsutil import start_writeback
from modelsync.retry import RetryPolicy, call_with_retry
from modelsync.sources import crc32c
from modelsync.sources.base import Hasher, Sink
from modelsync.sources.journal import range_crc, range_matches
from modelsync.units import Duration, Size

__all__ = [
    "MIN_RANGE_THRESHOLD",
    "BoundedBuffer",
    "RangeOptions",
    "RangeWriter",
    "SinkWriter",
    "fetch_ranges",
    "first_line",
    "object_key",
    "split",
]

# Reads from a response body: large enough that the per-call overhead vanishes,
# small enough that a dozen streams at once stay within the memory budget (an
# LLM-shaped revision peaked at 110 MB RSS with 1 MiB reads; see performance.md).
READ_SIZE = 256 * 1024

# The smallest range_threshold a backend accepts: anything smaller is always streamed
# whole, so transfer.py writes it straight to its place with nothing kept for resume.
MIN_RANGE_THRESHOLD = 1024 * 1024


def object_key(prefix: str, version: int, name: str = "") -> str:
    """The store key of ``name`` in ``version`` under a model's ``prefix``."""
    return (f"{prefix}/{version}/" if prefix else f"{version}/") + name


def first_line(exc: BaseException) -> str:
    """An SDK error's first line, bounded: error messages stay one line."""
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


class BoundedBuffer:
    """A whole small object (a manifest) in memory, refused past ``limit`` bytes so a
    hostile object cannot fill memory; ``hashers`` see every byte kept."""

    def __init__(self, limit: int, what: str, hashers: Sequence[Hasher] = ()) -> None:
        self._limit = limit
        self._what = what
        self._hashers = hashers
        self._chunks: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> int:
        self._size += len(data)
        if self._size > self._limit:
            raise RefusedError(f"{self._what}: larger than {self._limit} bytes")
        for hasher in self._hashers:
            hasher.update(data)
        self._chunks.append(data)
        return len(data)

    def value(self) -> bytes:
        return b"".join(self._chunks)


class RangeOptions(BaseModel):
    """Transfer tuning every network backend accepts in [models.source_options]."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    # Objects at least this large are fetched as parallel byte ranges.
    range_threshold: Size = Field(default=64 * 1024 * 1024, ge=MIN_RANGE_THRESHOLD)
    range_size: Size = Field(default=16 * 1024 * 1024, ge=256 * 1024, le=1024**3)
    range_workers: int = Field(default=4, ge=1, le=64)
    connect_timeout: Duration = Field(default=10.0, gt=0, le=600)
    read_timeout: Duration = Field(default=60.0, gt=0, le=3600)


class SinkWriter:
    """A file-like object for a client: checks for a stop before each write."""

    def __init__(self, sink: Sink, cancel: CancelToken) -> None:
        self._sink = sink
        self._cancel = cancel

    def write(self, data: bytes) -> int:
        self._cancel.check()
        return self._sink.write(data)


class RangeWriter:
    """Writes one byte range of the destination file in place, as bytes arrive.

    The range is cut into blocks of ``block`` bytes: each completed block is reported
    with its crc32c (``on_block``: the resume journal) and becomes the point a retry
    resumes from, so neither a dropped connection nor a kill loses more than the
    block in flight.
    """

    def __init__(
        self,
        fd: int,
        offset: int,
        length: int,
        cancel: CancelToken,
        label: str,
        on_bytes: Callable[[int], None] | None = None,
        block: int = 0,
        on_block: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self._fd = fd
        self._end = offset + length
        self._cancel = cancel
        self._label = label
        self._on_bytes = on_bytes
        self._block = block or length
        self._on_block = on_block
        self.start = offset
        self.offset = offset
        # Where a retry starts: the end of the last complete block.
        self.resume = offset
        self._new_block()

    def _new_block(self) -> None:
        self._block_start = self.offset
        self._block_end = min(self.offset + self._block, self._end)
        self._block_crc = 0

    def write(self, data: bytes) -> int:
        self._cancel.check()
        if self.offset + len(data) > self._end:
            # An answer longer than the range asked for is the answer's fault (a proxy
            # that dropped the Range header), not the revision's: retried (once: an
            # OddAnswer), never a refusal. The engine turns such answers away before
            # the body; this bound stays for a store that says 206 and then sends more.
            raise OddAnswer(
                f"{self._label}: server sent more than the requested range; not what was asked for"
            )
        view = memoryview(data)
        while view:
            piece = view[: self._block_end - self.offset]
            # A read inside one block (the usual case: 256 KiB reads of 1 MiB blocks,
            # ranges block-aligned) is checksummed as the bytes it came in, uncopied.
            whole = len(piece) == len(data)
            self._block_crc = crc32c.extend(data if whole else piece, self._block_crc)
            while piece:
                written = os.pwrite(self._fd, piece, self.offset)
                self.offset += written
                view = view[written:]
                piece = piece[written:]
            if self.offset == self._block_end:
                if self._on_block is not None:
                    length = self.offset - self._block_start
                    self._on_block(self._block_start, length, self._block_crc)
                self.resume = self.offset
                self._new_block()
        if self._on_bytes is not None:
            self._on_bytes(len(data))
        return len(data)

    def reset(self) -> None:
        """Start again from the last complete block (a retry asks for the rest only)."""
        self.offset = self.resume
        self._new_block()

    @property
    def complete(self) -> bool:
        return self.offset == self._end


# (first byte, last byte inclusive, where to write, token) -> None: one ranged GET.
GetRange = Callable[[int, int, RangeWriter, CancelToken], None]


def split(size: int, step: int) -> list[tuple[int, int]]:
    """(start, length) of each range of an object of ``size`` bytes."""
    return [(start, min(step, size - start)) for start in range(0, size, step)]


def fetch_ranges(
    *,
    size: int,
    sink: Sink,
    cancel: CancelToken,
    get_range: GetRange,
    options: RangeOptions,
    retry: RetryPolicy,
    log: structlog.typing.FilteringBoundLogger,
    what: str,
    hashers: Sequence[Hasher] = (),
) -> int:
    """Fetch ``size`` bytes into ``sink`` as parallel ranges; return their crc32c.

    Blocks of ranges that the sink's journal kept from an interrupted download are
    read back and reused when their crc32c still matches; a range resumes after its
    last matching block. The sha256 (and ``hashers``, for the
    storage's checksum) is computed in order in this thread while later ranges are
    still downloading, so hashing overlaps the transfer instead of following it.
    The crc32c of the whole object is joined from its blocks' (each computed as the
    block arrived, or read back when a kept block was checked): no pass of its own.
    """
    if sink.expected_size is not None and size != sink.expected_size:
        raise RefusedError(f"{what}: object is {size} bytes, manifest says {sink.expected_size}")
    journal = sink.journal
    kept = journal.kept(size) if journal is not None else {}
    block = min(_BLOCK, options.range_size)
    fd = os.open(sink.path, os.O_RDWR)
    local = cancel.child()
    reused = [0]
    # (start, length, crc32c) of every block, kept or fetched, in any order.
    blocks: list[tuple[int, int, int]] = []

    def fetched(start: int, length: int, crc: int) -> None:
        blocks.append((start, length, crc))
        if journal is not None:
            journal.record(start, length, crc)

    try:
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)

        def kept_prefix(start: int, end: int) -> int:
            """Where the blocks kept for this range stop matching the bytes on disk."""
            pos = start
            while pos < end:
                length = min(block, end - pos)
                record = kept.get(pos)
                if record is None or record[0] != length:
                    break
                local.check()
                if not range_matches(fd, pos, length, record[1]):
                    log.warning(
                        "a kept range changed on disk; fetching it again", file=what, at=pos
                    )
                    break
                blocks.append((pos, length, record[1]))
                pos += length
            return pos

        def one(start: int, length: int) -> None:
            end = start + length
            pos = kept_prefix(start, end)
            if pos > start:
                reused[0] += pos - start
                if sink.on_bytes is not None:
                    sink.on_bytes(pos - start)
            if pos == end:
                return
            writer = RangeWriter(
                fd,
                pos,
                end - pos,
                local,
                what,
                sink.on_bytes,
                block,
                fetched,
            )

            def attempt() -> None:
                writer.reset()
                get_range(writer.offset, end - 1, writer, local)
                if not writer.complete:
                    raise TransientSourceError(f"{what}: short range at {writer.offset}")

            call_with_retry(attempt, retry, local, f"{what} bytes {start}-{end - 1}", log)
            start_writeback(fd, pos, end - pos)

        digest = hashlib.sha256()
        with ThreadPoolExecutor(options.range_workers, "range") as pool:
            parts = split(size, options.range_size)
            futures = [pool.submit(one, start, length) for start, length in parts]
            try:
                for (start, length), future in zip(parts, futures, strict=True):
                    future.result()
                    _hash_range(fd, start, length, [digest, *hashers])
            except BaseException:
                local.stop_event.set()
                raise
        whole = crc32c.join(blocks, size)
        if whole is None:
            # Every range completed, so its blocks cover the object; should that ever
            # not hold, the checksum is read from the file rather than trusted.
            whole = range_crc(fd, 0, size)
        if whole is None:
            raise TransientSourceError(f"{what}: file ended before {size} bytes while hashing")
    except TransientSourceError as exc:
        # Each range already had its retries; do not start the whole object over.
        raise SourceError(f"{exc} (gave up after retries)") from exc
    finally:
        os.close(fd)
        if journal is not None:
            journal.close()
    sink.resumed = reused[0]
    if reused[0]:
        log.info("resumed a partial download", file=what, reused_bytes=reused[0])
    sink.adopt(digest.hexdigest(), size)
    return whole


# Resume granularity inside a range: each block is journaled once complete, so a
# kill loses the part of each block in flight. 4 MiB lost about 0.8 % of a 3 GB
# revision (12 ranges in flight, 2 MiB each on average: the bench's kill -9 row
# refetched 10.8 % after a kill at 90 %); 1 MiB costs a 35-byte journal line per MiB.
_BLOCK = 1024 * 1024

# Reads of the file just written, for hashing (one per file at a time).
_HASH_READ = 1024 * 1024


def _hash_range(fd: int, start: int, length: int, hashers: Sequence[Hasher]) -> None:
    """Feed the bytes just written at ``start`` (still in the page cache) to ``hashers``."""
    offset, end = start, start + length
    while offset < end:
        chunk = os.pread(fd, min(_HASH_READ, end - offset), offset)
        if not chunk:
            raise TransientSourceError(f"file ended at {offset} while hashing")
        for hasher in hashers:
            hasher.update(chunk)
        offset += len(chunk)
