"""CRC-32C: extending a checksum over bytes, and joining the checksums of adjacent pieces.

A large object arrives as parallel ranges, each cut into blocks whose crc32c the
resume journal keeps. GCS states the crc32c of the whole object; computing it again
over the finished file was a second pass over every byte (0.4 CPU s per 3 GB here).
``combine`` gives it from the blocks' checksums instead, as zlib's ``crc32_combine``
does for CRC-32: appending ``n`` zero bytes to a CRC is a linear map over GF(2), a
32 x 32 bit matrix, and crc(A + B) = zeros(len B)(crc(A)) ^ crc(B). The matrix for a
length is built once (ranges are cut into blocks of one size), then each join is one
product of that matrix with a 32-bit vector.
"""

from __future__ import annotations

import functools

__all__ = ["combine", "extend", "join"]

# CRC-32C's polynomial, bit-reversed (the register shifts right).
_POLY = 0x82F63B78


def extend(data: bytes | memoryview, value: int = 0) -> int:
    """CRC-32C of ``data`` continuing from ``value`` (google-crc32c's C code: ~7 GB/s
    here; google-cloud-storage already depends on it)."""
    import google_crc32c

    # It takes bytes only: a memoryview is copied, bytes are not.
    return int(google_crc32c.extend(value, data if isinstance(data, bytes) else bytes(data)))


def combine(first: int, second: int, second_length: int) -> int:
    """The crc32c of A + B from crc32c(A), crc32c(B) and the length of B."""
    if second_length <= 0:
        return first
    return _times(_zeros(second_length), first) ^ second


def join(pieces: list[tuple[int, int, int]], size: int) -> int | None:
    """The crc32c of ``size`` bytes from the (start, length, crc32c) of its pieces, in
    any order; None unless they cover every byte once, end to end."""
    value, offset = 0, 0
    for start, length, crc in sorted(pieces):
        if start != offset or length <= 0:
            return None
        value = combine(value, crc, length)  # from 0, the first piece's own crc
        offset += length
    return value if offset == size else None


def _times(matrix: tuple[int, ...], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _product(left: tuple[int, ...], right: tuple[int, ...]) -> tuple[int, ...]:
    # Column n of left * right is left applied to column n of right.
    return tuple(_times(left, column) for column in right)


# Lengths seen: the block size, and each file's last blocks (a daemon meets new ones
# for as long as it runs, hence a bound).
@functools.lru_cache(maxsize=64)
def _zeros(length: int) -> tuple[int, ...]:
    """The map that appends ``length`` zero bytes to a CRC register."""
    # One zero bit: the register shifts right, the polynomial folded in by its low bit.
    power = (_POLY, *(1 << row for row in range(31)))
    for _ in range(3):  # one zero byte: eight zero bits
        power = _product(power, power)
    result: tuple[int, ...] | None = None
    while length:
        if length & 1:
            result = power if result is None else _product(power, result)
        length >>= 1
        if length:
            power = _product(power, power)
    assert result is not None
    return result
