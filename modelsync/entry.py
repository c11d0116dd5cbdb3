"""The console script: answers what needs no command line parser, then hands over.

`modelsync --version` is what probes, init containers and package checks run most
often; it needs one string. Importing the command line (click, the error tree, the
release commands) first would triple its cost, so the parser is imported only for
everything else. Every other command leaves through here too, with the GC frozen.
"""

from __future__ import annotations

import gc
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

    try:
        cli_main(argv)
    finally:
        # The command is over and the process exits next. The interpreter's last
        # collections would walk every object the imports and the pass made (SDK
        # modules, pydantic schemas, a manifest's entries): 86-173 ms of a `sync`.
        # Frozen, they are left to the process's end; files were closed, synced and
        # renamed by the code that wrote them, and atexit handlers still run.
        gc.freeze()
