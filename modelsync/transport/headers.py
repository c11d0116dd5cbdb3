"""A response's header block read without the email package, where that is exact.

http.client parses every response's headers with ``email.parser`` (a feed parser
built for mail), which costs about 55 us for a store's dozen headers: about a tenth
of a small GET's CPU in the engine (docs/transport.md, "Header parsing"). A header
block of well-formed ``Name: value`` lines parses to the same message with one
regular expression per line. Anything else (a folded line, a line that is not a
header, a bare CR) goes to http.client's own parser, so what the email package makes
of an odd block (its defects, which urllib3 reports) is unchanged.
"""

from __future__ import annotations

import email.parser
import http.client
import re
import types
from typing import Any, BinaryIO

__all__ = ["Response", "parse_headers"]

# http.client's bounds on one header line and on the number of lines.
_MAXLINE = 65536
_MAXHEADERS = 100

# One header line as email.feedparser reads it when nothing is odd: a name of
# printable ASCII but ':' (its headerRE), the value after leading blanks, nothing
# that feedparser would cut the line at (CR or LF) before the line's end.
_LINE = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*)\r?\n?\Z")
_ENDS = (b"\r\n", b"\n", b"")


def parse_headers(fp: BinaryIO) -> http.client.HTTPMessage:
    """What ``http.client.parse_headers(fp)`` returns, read the same way."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAXHEADERS:
            raise http.client.HTTPException(f"got more than {_MAXHEADERS} headers")
        if line in _ENDS:
            break
    message = http.client.HTTPMessage()
    match = _LINE.match
    for raw in lines[:-1]:
        found = match(raw.decode("iso-8859-1"))
        if found is None:
            text = b"".join(lines).decode("iso-8859-1")
            parser = email.parser.Parser(_class=http.client.HTTPMessage)
            parsed: http.client.HTTPMessage = parser.parsestr(text)
            return parsed
        # set_raw is what the feed parser calls for each header it reads.
        message.set_raw(found.group(1), found.group(2))
    return message


def _begin() -> Any:
    """HTTPResponse.begin calling this module's parse_headers: the standard library's
    own code (status line, 100 Continue, length and keep-alive rules) with only the
    header parser swapped, rather than a copy of it to keep in step with CPython."""
    begin = http.client.HTTPResponse.begin
    if "parse_headers" not in begin.__code__.co_names:
        return begin  # a Python whose begin parses differently: keep it whole
    scope = dict(vars(http.client), parse_headers=parse_headers)
    return types.FunctionType(begin.__code__, scope, begin.__name__, begin.__defaults__)


class Response(http.client.HTTPResponse):
    """http.client's response with the header block read by ``parse_headers``."""

    begin = _begin()
