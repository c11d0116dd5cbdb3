from __future__ import annotations

import pytest

from modelsync.units import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10m", 600),
        ("1h30m", 5400),
        ("45s", 45),
        ("7d", 604800),
        ("500ms", 0.5),
        (12, 12),
        ("2.5", 2.5),
        ("1.5h", 5400),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    """Durations accept unit strings and plain numbers of seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10 minutes", "m", "-5", "5x", True, [], "1h 30m"])
def test_bad_durations(text: object) -> None:
    """Anything else is refused with a message showing the expected form."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MiB", 512 * 2**20), ("20GB", 20 * 10**9), (1024, 1024), ("1.5KiB", 1536), ("7", 7)],
)
def test_sizes(text: object, size: int) -> None:
    """Sizes accept SI and binary units."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "5 XB", -1, 1.5, False])
def test_bad_sizes(text: object) -> None:
    """Anything else is refused."""
    with pytest.raises(ValueError, match="size"):
        parse_size(text)
