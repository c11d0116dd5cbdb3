"""CRC-32C: extending over bytes, and the checksum of a whole from its pieces' checksums."""

from __future__ import annotations

import itertools
import os
import random

import google_crc32c

from modelsync.sources.crc32c import combine, extend, join


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def test_extend_continues_a_checksum_over_bytes_and_views() -> None:
    data = os.urandom(300_000)
    assert extend(data) == _crc(data)
    assert extend(data[10:], extend(data[:10])) == _crc(data)
    assert extend(memoryview(data)[10:], extend(memoryview(data)[:10])) == _crc(data)


def test_combine_matches_the_checksum_of_the_joined_bytes() -> None:
    rng = random.Random(7)
    for first_length, second_length in [(0, 5), (1, 1), (5, 0), (1000, 1 << 20), (3, 777_777)]:
        first, second = rng.randbytes(first_length), rng.randbytes(second_length)
        assert combine(_crc(first), _crc(second), second_length) == _crc(first + second)


def test_join_folds_pieces_in_any_order_and_refuses_gaps_and_overlaps() -> None:
    rng = random.Random(11)
    data = rng.randbytes(5 * (1 << 20) + 12_345)
    cuts = sorted({0, len(data), *(rng.randrange(1, len(data)) for _ in range(9))})
    pieces = [(a, b - a, _crc(data[a:b])) for a, b in itertools.pairwise(cuts)]
    rng.shuffle(pieces)
    assert join(pieces, len(data)) == _crc(data)
    start, length, crc = pieces[0]
    others = pieces[1:]
    assert join(others, len(data)) is None  # a piece missing
    assert join([*pieces, (start, length, crc)], len(data)) is None  # one twice
    assert join(pieces, len(data) + 1) is None  # short of the size
    assert join([], 0) == 0
