"""Human-friendly durations ("10m", "1h30m") and sizes ("20GiB") for the configuration."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

__all__ = ["Duration", "Size", "parse_duration", "parse_size"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


# The longest duration accepted anywhere (an interval, a timeout): 366 days.
MAX_DURATION = 366 * 86400.0
MAX_DURATION_TEXT = "366d"


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as "90s", "10m", "1h30m", "7d"."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '10m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"{value!r} is not a duration like '30s', '10m', '1h30m'")
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    else:
        raise ValueError("a duration must be a number of seconds or a string like '10m'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite, non-negative number of seconds")
    if seconds > MAX_DURATION:
        # Longer waits overflow the clocks and timers they end up in.
        raise ValueError(f"a duration cannot be longer than {MAX_DURATION_TEXT}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or a string such as "512MiB", "20GB"."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '20GiB'")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.match(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not a size like '512MiB' or '20GB'")
        size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "B").lower()])
    else:
        raise ValueError("a size must be a number of bytes or a string like '20GiB'")
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


# Configuration field types: "10m", 90, "1h30m" / "64MiB", 1048576.
Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
