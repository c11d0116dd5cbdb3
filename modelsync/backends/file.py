"""file:///path: a local or mounted directory laid out like a bucket.

The one backend with change events: the daemon watches the directory and starts a
pass as soon as a revision lands, instead of waiting for the interval.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel

from modelsync.cancel import CancelToken
from modelsync.errors import NotFoundError, PublishConflict, RefusedError, SourceError
from modelsync.fsutil import fsync_dir
from modelsync.manifest import check_relpath, parse_version
from modelsync.sources.base import Backend, Connections, ObjectInfo, Sink, Source
from modelsync.sources.control import UNCHANGED, Control, Unchanged, check_control_key

__all__ = ["BACKEND", "LocalSource"]

_CHUNK = 1024 * 1024
# How long a conditional control write waits for another writer's lock in the bucket.
_LOCK_WAIT = 5.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Non-blocking so that opening a FIFO returns at once (it is then refused by fstat).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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

    def list_versions(self, cancel: CancelToken | None = None) -> list[int]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.url}: source directory does not exist") from exc
        except OSError as exc:
            raise SourceError(f"{self.url}: cannot list: {exc.strerror}") from exc
        versions = (parse_version(n) for n in names)
        return sorted(v for v in versions if v is not None)

    def _open(self, version: int, name: str) -> BinaryIO:
        """Open the object without following any link, as a regular file.

        Every component is opened relative to its parent with O_NOFOLLOW, and the
        leaf is checked on the opened descriptor: a file swapped for a link (or a
        FIFO, which would block the read) between a check and the open is never read.
        """
        label = f"{self.url}/{version}/{name}"
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        parts = name.split("/")
        fd = os.open(self._version_dir(version), _DIR_FLAGS)
        try:
            for part in parts[:-1]:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = inner
            leaf = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RefusedError(
                    f"{label}: is a link; a file:// source's links are not followed"
                ) from None
            raise
        finally:
            os.close(fd)
        mode = os.fstat(leaf).st_mode
        if not stat.S_ISREG(mode):
            os.close(leaf)
            raise RefusedError(f"{label}: not a regular file")
        os.set_blocking(leaf, True)
        return os.fdopen(leaf, "rb")

    def read_object(
        self, version: int, name: str, limit: int, cancel: CancelToken | None = None
    ) -> bytes | None:
        try:
            with self._open(version, name) as handle:
                data = handle.read(limit + 1)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise SourceError(f"{self.url}/{version}/{name}: cannot read: {exc.strerror}") from exc
        if len(data) > limit:
            raise RefusedError(f"{self.url}/{version}/{name}: larger than {limit} bytes")
        return data

    def list_objects(self, version: int, cancel: CancelToken | None = None) -> list[ObjectInfo]:
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
        try:
            handle = self._open(version, name)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFoundError(f"{self.url}/{version}/{name}: object does not exist") from exc
        except OSError as exc:
            raise SourceError(f"{self.url}/{version}/{name}: cannot read: {exc.strerror}") from exc
        with handle:
            while chunk := handle.read(_CHUNK):
                cancel.check()
                sink.write(chunk)
        # A local directory keeps no checksum, and its bytes cross no network: what
        # was read is what the directory holds (a complete_marker revision of a
        # file:// source is as good as the directory, as it always was).
        sink.vouch("local read")

    def upload(self, version: int, name: str, path: Path, *, exclusive: bool = False) -> None:
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
            if exclusive:
                # link(2) fails if the name exists: the filesystem's create-only write.
                try:
                    os.link(tmp, dest)
                except FileExistsError as exc:
                    raise PublishConflict(
                        f"{self.url}/{version}/{name}: already exists: written by someone else"
                    ) from exc
                tmp.unlink()
            else:
                tmp.replace(dest)
            fsync_dir(dest.parent)
        except (OSError, PublishConflict) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, PublishConflict):
                raise
            hint = " (disk full)" if exc.errno == errno.ENOSPC else ""
            raise SourceError(
                f"{self.url}/{version}/{name}: cannot write: {exc.strerror}{hint}"
            ) from exc

    # -- control objects (sources/control.py) ---------------------------------------
    # Every control call walks from the source's root one component at a time, each
    # opened relative to its parent with O_NOFOLLOW: a ``_reports/<version>`` (or any
    # other directory on the way) made a link never sends a read or a write out of the
    # bucket (into the served tree, say). The root itself is the configured path.

    def _control_dir(self, key: str, parts: list[str], create: bool) -> int:
        """A descriptor of ``<root>/<parts...>`` (created when ``create``);
        FileNotFoundError when missing, RefusedError when a component is a link."""
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = inner
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise RefusedError(
                    f"{self.url}/{key}: a link or a file on its path; links are not followed"
                ) from None
            raise
        return fd

    def get_control(
        self, key: str, limit: int, tag: str | None = None, cancel: CancelToken | None = None
    ) -> Control | Unchanged | None:
        *dirs, name = check_control_key(key).split("/")
        try:
            dir_fd = self._control_dir(key, dirs, create=False)
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            finally:
                os.close(dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RefusedError(f"{self.url}/{key}: is a link; not followed") from None
            raise SourceError(f"{self.url}/{key}: cannot read: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise RefusedError(f"{self.url}/{key}: not a regular file")
            found = _tag(info)
            if tag is not None and found == tag:
                return UNCHANGED  # one stat: the cheapest "not modified"
            os.set_blocking(fd, True)
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise RefusedError(f"{self.url}/{key}: larger than {limit} bytes")
        return Control(data, found)

    def put_control(self, key: str, data: bytes, *, match: str | None = None) -> str:
        *dirs, name = check_control_key(key).split("/")
        tmp = f".{name}.{uuid.uuid4().hex[:8]}"
        try:
            dir_fd = self._control_dir(key, dirs, create=True)
        except OSError as exc:
            raise SourceError(f"{self.url}/{key}: cannot write: {exc.strerror}") from exc
        try:
            out = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=dir_fd,
            )
            with os.fdopen(out, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            # The compare and the rename happen under one lock per directory, so two
            # writers on this host (or on a filesystem with working flock) cannot both
            # win a match; readers never lock (the rename is atomic).
            with _locked(dir_fd, f"{self.url}/{key}"):
                if match is not None:
                    try:
                        current: str | None = _tag(
                            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                        )
                    except FileNotFoundError:
                        current = None
                    if current != (match or None):
                        raise PublishConflict(
                            f"{self.url}/{key}: changed by someone else since it was read"
                        )
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                os.fsync(dir_fd)
                return _tag(os.stat(name, dir_fd=dir_fd, follow_symlinks=False))
        except OSError as exc:
            raise SourceError(f"{self.url}/{key}: cannot write: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            os.close(dir_fd)

    def list_control(self, prefix: str, cancel: CancelToken | None = None) -> dict[str, str]:
        # Like a bucket listing, recursive: reports and their failed/ markers. A
        # directory that is a link is not entered: what it holds is not in the bucket.
        parts = check_control_key(prefix).rstrip("/").split("/")
        try:
            top = self._control_dir(prefix, parts, create=False)
        except (FileNotFoundError, NotADirectoryError, RefusedError):
            return {}
        except OSError as exc:
            raise SourceError(f"{self.url}/{prefix}: cannot list: {exc.strerror}") from exc
        found: dict[str, str] = {}
        pending = [(prefix, top)]
        try:
            while pending:
                relative, fd = pending.pop()
                try:
                    self._list_into(found, pending, relative, fd)
                finally:
                    os.close(fd)
        finally:
            for _, fd in pending:  # left open when a listing failed
                os.close(fd)
        return found

    def _list_into(
        self, found: dict[str, str], pending: list[tuple[str, int]], relative: str, fd: int
    ) -> None:
        """Add the files of directory ``fd`` to ``found`` and its directories to ``pending``."""
        try:
            with os.scandir(fd) as listing:
                entries = list(listing)
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    try:
                        inner = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                    except OSError:
                        continue  # gone, or swapped for a link since the listing
                    pending.append((f"{relative}{entry.name}/", inner))
                elif stat.S_ISREG(info.st_mode):
                    found[relative + entry.name] = _tag(info)
        except OSError as exc:
            raise SourceError(f"{self.url}/{relative}: cannot list: {exc.strerror}") from exc

    def close(self) -> None:
        return None


def _tag(info: os.stat_result) -> str:
    """A file's version: a rename gives a new inode, a rewrite a new size or mtime."""
    return f"{info.st_ino:x}-{info.st_size:x}-{info.st_mtime_ns:x}"


@contextlib.contextmanager
def _locked(dir_fd: int, what: str) -> Iterator[None]:
    """The directory's ``.lock``, held. It is in the bucket, where anyone who can
    write the bucket can plant a FIFO there or hold the lock: opened without
    blocking, only a regular file, and waited for at most _LOCK_WAIT seconds."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(".lock", flags, 0o644, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError(f"{what}: the bucket's .lock is not a regular file; not used")
        deadline = time.monotonic() + _LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SourceError(
                        f"{what}: the bucket's .lock is held by another writer for {_LOCK_WAIT:g} s"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def _root(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


class _FileBackend(Backend):
    name = "file"
    schemes = ("file",)
    example = "file:///path"

    def parse(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"file source {url!r} needs an absolute path: file:///path")
        if parts.query or parts.fragment:
            raise ValueError(f"file source {url!r} has a query or fragment: file:///path")
        return url.rstrip("/")

    def open(self, url: str, options: BaseModel, connections: Connections | None) -> Source:
        return LocalSource(url)

    def watch_root(self, url: str) -> Path | None:
        return _root(url)


BACKEND = _FileBackend()
