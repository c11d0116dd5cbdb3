"""Text from outside (a bucket, a revision, a server) made one bounded line.

Whoever writes a bucket writes the model names, metric names and unknown keys that an
error quotes, and an error's message is stored (the state file, its history) and
printed (the one line a one-shot command ends with). Every such text passes here
first, so neither a 5 MB key nor a newline ever reaches a log line, a terminal or the
state file whole.
"""

from __future__ import annotations

__all__ = ["LINE_LIMIT", "QUOTE_LIMIT", "one_line", "quote"]

# The longest line an error, a stored reason or a printed message is: room for a
# path, a quoted value or two and the words around them.
LINE_LIMIT = 500
# The longest a quoted outside value is inside such a line, so that the words after
# it (what was expected, where) survive the cut of the whole line.
QUOTE_LIMIT = 100


def one_line(text: str, limit: int = LINE_LIMIT) -> str:
    """``text`` as one printable line of at most ``limit`` characters (a hostile key or
    value quoted in an error never breaks a log line, a terminal or the state file)."""
    if len(text) <= limit and text.isprintable():
        # Most texts already are one (every save of the state passes its reasons here
        # again): checked in C, not character by character.
        return text
    if len(text) > limit:
        # Cut before flattening: a 5 MB text costs no 5 MB pass.
        text = text[: limit - 3] + "..."
    return "".join(c if c.isprintable() else "?" for c in text)


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``value``'s repr as an error quotes it (``'name'``), cut to ``limit`` characters."""
    if isinstance(value, str) and len(value) > limit:
        # repr() of the whole would copy it first; the head is all that is shown.
        value = value[:limit]
    return one_line(repr(value), limit)
