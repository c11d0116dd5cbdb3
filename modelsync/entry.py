"""The console script: answers what needs no command line parser, then hands over.

`modelsync --version` is what probes, init containers and package checks run most
often; it needs one string. Importing the command line (click, the error tree, the
release commands) first would triple its cost, so the parser is imported only for
everything else.
"""

from __future__ import annotations

import sys

from modelsync import __version__

__all__ = ["main"]

# click's version_option prints exactly this; the fast path must not change the answer.
_VERSION_LINE = f"modelsync, version {__version__}"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: `--version` here, every other command in modelsync.cli."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        sys.stdout.write(_VERSION_LINE + "\n")
        sys.exit(0)
    from modelsync.cli import main as cli_main

    cli_main(argv)
