"""file:// sources: a local or mounted directory laid out like a bucket."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelsync.cancel import CancelToken
from modelsync.errors import NotFoundError, RefusedError, SourceError
from modelsync.fsutil import fsync_dir
from modelsync.manifest import check_relpath, parse_version
from modelsync.sources.base import ObjectInfo, Sink

__all__ = ["LocalSource"]

_CHUNK = 1024 * 1024


class LocalSource:
    """Reads and writes ``<root>/<version>/<name>``; refuses links that leave a version."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(unquote(urlsplit(url).path))

    def _version_dir(self, version: int) -> Path:
        """The real directory of ``version``, refusing one that is a link out of the source."""
        path = self.root / str(version)
        real = Path(os.path.realpath(path))
        if path.exists() and real.parent != Path(os.path.realpath(self.root)):
            raise RefusedError(f"{self.url}/{version}: version directory links outside the source")
        return real

    def _object_path(self, version: int, name: str) -> Path:
        """The object's path, refusing names or links that resolve outside the version."""
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        base = self._version_dir(version)
        path = base / name
        real = Path(os.path.realpath(path))
        if real != base and base not in real.parents:
            raise RefusedError(f"{self.url}/{version}/{name}: links outside the revision")
        return path

    def list_versions(self) -> list[int]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.url}: source directory does not exist") from exc
        except OSError as exc:
            raise SourceError(f"{self.url}: cannot list: {exc.strerror}") from exc
        versions = (parse_version(n) for n in names)
        return sorted(v for v in versions if v is not None)

    def read_object(self, version: int, name: str, limit: int) -> bytes | None:
        path = self._object_path(version, name)
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise SourceError(f"{self.url}/{version}/{name}: cannot read: {exc.strerror}") from exc
        if len(data) > limit:
            raise RefusedError(f"{self.url}/{version}/{name}: larger than {limit} bytes")
        return data

    def list_objects(self, version: int) -> list[ObjectInfo]:
        base = self._version_dir(version)
        if not base.is_dir():
            return []
        found = []
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base).as_posix()
            if path.is_symlink():
                self._object_path(version, rel)
            if path.is_file():
                stat = path.stat()
                updated = datetime.fromtimestamp(stat.st_mtime, UTC)
                found.append(ObjectInfo(rel, stat.st_size, updated))
        return found

    def fetch(self, version: int, name: str, sink: Sink, cancel: CancelToken) -> None:
        path = self._object_path(version, name)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFoundError(f"{self.url}/{version}/{name}: object does not exist") from exc
        except OSError as exc:
            raise SourceError(f"{self.url}/{version}/{name}: cannot read: {exc.strerror}") from exc
        with handle:
            while chunk := handle.read(_CHUNK):
                cancel.check()
                sink.write(chunk)

    def upload(self, version: int, name: str, path: Path) -> None:
        dest = (
            self.root
            / str(version)
            / check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        )
        tmp = dest.with_name(f".{dest.name}.upload-{uuid.uuid4().hex[:8]}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with path.open("rb") as src, tmp.open("wb") as out:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(dest)
            fsync_dir(dest.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            hint = " (disk full)" if exc.errno == errno.ENOSPC else ""
            raise SourceError(
                f"{self.url}/{version}/{name}: cannot write: {exc.strerror}{hint}"
            ) from exc

    def close(self) -> None:
        return None
