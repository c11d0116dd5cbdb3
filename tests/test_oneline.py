"""Outside text is made one bounded line before it is quoted, stored or printed."""

from __future__ import annotations

import pytest

from modelsync.oneline import LINE_LIMIT, QUOTE_LIMIT, one_line, quote


@pytest.mark.parametrize(
    "text",
    ["k" * 5_000_000, "line\nbreak\r\x1b[2J" * 1000, "\U0001f600" * 10_000, "short"],
)
def test_one_line_is_printable_and_bounded(text: str) -> None:
    """Any text comes back printable, without a line break, at most LINE_LIMIT long,
    and whole when it was short and printable already."""
    line = one_line(text)
    assert len(line) <= LINE_LIMIT and line.isprintable()
    assert line == text or line.endswith("...") or "?" in line


@pytest.mark.parametrize("value", ["n" * 5_000_000, ["x" * 1000] * 100, "\ud800", 10**400])
def test_quote_is_a_bounded_repr(value: object) -> None:
    """A quoted value is its repr, one line of at most QUOTE_LIMIT characters."""
    quoted = quote(value)
    assert len(quoted) <= QUOTE_LIMIT and quoted.isprintable()
    assert quoted == repr(value) or quoted.endswith("...") or "?" in quoted
