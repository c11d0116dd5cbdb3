"""Downloads in progress, kept across passes and restarts so an interrupted one resumes.

    <state>/partial/<model>/<sha256>.part     bytes of a file being fetched
    <state>/partial/<model>/<sha256>.ranges   its completed blocks (sources/journal.py)
    <state>/partial/<model>/<sha256>          a fetched file whose sha256 matched

Everything is keyed by the manifest's sha256, so kept bytes are never used for other
content, and everything is checked again before use (a kept block by its crc32c, a
kept file by its sha256). Only files of the revision being downloaded are kept
(``keep_only``), so the directory never holds more than one revision.

Links are never followed here: an entry that is not a regular file (a symbolic link,
a FIFO, a directory where a file goes) is removed, not kept, so a planted one costs
one download at most instead of failing every pass.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Collection
from pathlib import Path

from modelsync.fsutil import remove_entry, store_error
from modelsync.sources.journal import RangeJournal

__all__ = ["PartialDownloads"]

_NAME = re.compile(r"^([0-9a-f]{64})(\.part|\.ranges)?$")


class PartialDownloads:
    """One model's kept downloads."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def prepare(self) -> None:
        """Make the directory (once per download, not once per file)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_error("create", self.dir, exc) from exc

    def part(self, sha256: str) -> tuple[Path, RangeJournal]:
        """Where to fetch the file with ``sha256``, and its block journal."""
        self.prepare()  # once per large file: cheap beside its ranged reads
        part, ranges = self.dir / f"{sha256}.part", self.dir / f"{sha256}.ranges"
        for path in (part, ranges):
            if _exists(path) and not _regular(path):
                remove_entry(path)
        return part, RangeJournal(ranges)

    def finish(self, sha256: str) -> Path:
        """The verified file for ``sha256``, its journal no longer needed."""
        final = self.dir / sha256
        try:
            (self.dir / f"{sha256}.part").rename(final)
        except OSError as exc:
            raise store_error("rename", final, exc) from exc
        with contextlib.suppress(FileNotFoundError):
            (self.dir / f"{sha256}.ranges").unlink()
        return final

    def keep(self, sha256: str, path: Path) -> None:
        """Keep ``path``, a verified file with ``sha256`` fetched elsewhere, as complete
        (a hard link: one syscall), so an interrupted pass does not fetch it again.
        Best effort: where it cannot be linked it is simply not kept."""
        final = self.dir / sha256
        try:
            os.link(path, final)
        except FileExistsError:
            # A kept file that failed its re-check (else it would have been reused).
            remove_entry(final)
            with contextlib.suppress(OSError):
                os.link(path, final)
        except OSError:
            pass

    def discard(self, sha256: str) -> None:
        """Forget everything kept for ``sha256`` (its bytes were not the manifest's)."""
        for name in (sha256, f"{sha256}.part", f"{sha256}.ranges"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()

    def complete(self) -> dict[str, Path]:
        """sha256 → a fetched, verified file (re-checked by the caller before use)."""
        return {m[1]: p for p, m in self._entries() if m[2] is None and _regular(p)}

    def kept_bytes(self, sizes: dict[str, int]) -> int:
        """About how many bytes of the files ``sizes`` (sha256 → size) are already here."""
        kept = 0
        for path, match in self._entries():
            sha, suffix = match[1], match[2]
            if sha not in sizes or suffix == ".ranges":
                continue
            with contextlib.suppress(OSError):
                # A part's allocated blocks: what was written so far (the file is sparse).
                stat = path.stat()
                kept += sizes[sha] if suffix is None else min(stat.st_blocks * 512, sizes[sha])
        return kept

    def keep_only(self, wanted: Collection[str]) -> int:
        """Remove everything not kept for a sha256 in ``wanted`` (downloads of revisions
        no longer wanted, and any stranger); return how many entries were removed."""
        removed = 0
        # One scan, and the kind of each entry from it (no stat): after a download
        # this removes one link per fetched small file, and pathlib's is_dir,
        # is_symlink and unlink per entry made 1,000 of them 15 ms instead of 7.
        try:
            with os.scandir(self.dir) as scan:
                entries = list(scan)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise store_error("read", self.dir, exc) from exc
        for entry in entries:
            match = _NAME.match(entry.name)
            try:
                regular = entry.is_file(follow_symlinks=False)
                if match is not None and match[1] in wanted and regular:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    removed += remove_entry(Path(entry.path))
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise store_error("clean", Path(entry.path), exc) from exc
            removed += 1
        return removed

    def _listing(self) -> list[Path]:
        try:
            return list(self.dir.iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise store_error("read", self.dir, exc) from exc

    def _entries(self) -> list[tuple[Path, re.Match[str]]]:
        found = []
        for path in self._listing():
            match = _NAME.match(path.name)
            if match is not None:
                found.append((path, match))
        return found


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _regular(path: Path) -> bool:
    """A regular file itself (lstat: a link to one is not)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise store_error("read", path, exc) from exc
