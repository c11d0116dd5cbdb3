"""Durable filesystem primitives: atomic writes, symlink swaps, directory fsyncs.

Every change that a reader (the serving process, or modelsync after a crash) may
observe goes through a rename, and every rename is followed by an fsync of the
directory that holds it, so that the new name survives a power cut.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import cast

from modelsync.errors import StoreError

__all__ = [
    "atomic_write_bytes",
    "file_kind",
    "fsync_dir",
    "move_dir",
    "open_regular_rw",
    "read_regular",
    "remove_entry",
    "remove_tree",
    "start_writeback",
    "store_error",
    "swap_symlink",
]


def store_error(action: str, path: Path, exc: OSError) -> StoreError:
    """A one-line StoreError that names the action, the path and a hint for common causes."""
    hint = ""
    if exc.errno == errno.ENOSPC:
        hint = " (disk full: free space or raise the volume size)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = " (check that modelsync may write there)"
    elif exc.errno == errno.EXDEV:
        hint = " (state_dir must be on the same filesystem as store)"
    return StoreError(f"cannot {action} {path}: {exc.strerror or exc}{hint}")


def read_regular(path: Path, limit: int, *, follow_links: bool = False) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``limit`` bytes.

    The one way modelsync reads a local file whose name someone else could have
    reused (state, manifests and signatures in trees, journals): a link is not
    followed, and a FIFO or a device (``/dev/zero``, a pipe nobody writes to) is
    refused before any read, so no such file can block or flood a pass.
    ``follow_links``: for a file the operator names (the config file, a secret),
    whose links are the operator's own (Kubernetes mounts ConfigMaps and Secrets
    through ``..data/`` links); the file at the end of them obeys the same rules.
    FileNotFoundError passes through (callers treat "missing" themselves); anything
    else is a one-line StoreError naming the path.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_links:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            if follow_links:
                raise StoreError(f"{path}: a loop of symbolic links; not read") from None
            raise StoreError(f"{path}: is a symbolic link; not followed") from None
        raise store_error("read", path, exc) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{path}: not a regular file ({file_kind(info.st_mode)}); not read")
        if info.st_size > limit:
            raise StoreError(f"{path}: {info.st_size} bytes, more than the {limit} allowed")
        chunks: list[bytes] = []
        left = limit + 1  # one byte more tells a file that grew past the limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise store_error("read", path, exc) from exc
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise StoreError(f"{path}: more than the {limit} bytes allowed")
    return data


def open_regular_rw(path: Path, mode: int = 0o644) -> int:
    """A descriptor open for reading and writing on ``path``, a regular file (created
    with ``mode``, and its directory, when missing). The caller closes it.

    The one way modelsync opens a file of its state directory that it keeps open to
    write or lock in place (lock files); ``read_regular``'s rules for the same reason:
    someone could have put something else under that name. Neither the file nor the
    directory that holds it (modelsync's own, e.g. ``locks/``) is followed if it is a
    link, so no file elsewhere is created or locked; a FIFO cannot block the open
    (O_NONBLOCK: opening one waits for a peer otherwise, before any pass deadline can
    act) and, like a directory, a device or a socket, is refused. Every refusal and
    every OSError (read-only volume, permissions, a file where the directory goes) is
    a one-line StoreError naming the path.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise store_error("create", path.parent, exc) from exc
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        # O_NOFOLLOW with O_DIRECTORY: a link is ELOOP, or ENOTDIR on some kernels.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and path.parent.is_symlink():
            raise StoreError(f"{path.parent}: is a symbolic link; not followed") from None
        raise store_error("open", path.parent, exc) from exc
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path.name, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"{path}: is a symbolic link; not followed") from None
        # A directory (EISDIR) or a socket (ENXIO) is named for what it is.
        try:
            found = os.lstat(path.name, dir_fd=dir_fd).st_mode
        except OSError:
            found = stat.S_IFREG  # gone meanwhile: the open's own error says why
        if not stat.S_ISREG(found):
            raise StoreError(
                f"{path}: not a regular file ({file_kind(found)}); not opened"
            ) from None
        raise store_error("open", path, exc) from exc
    finally:
        os.close(dir_fd)
    try:
        found = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise store_error("open", path, exc) from exc
    if not stat.S_ISREG(found):
        os.close(fd)
        raise StoreError(f"{path}: not a regular file ({file_kind(found)}); not opened")
    return fd


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words for an error line ("a FIFO")."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def fsync_dir(path: Path) -> None:
    """Persist the directory entries of ``path`` (names created, renamed or removed in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(
    path: Path, data: bytes, mode: int = 0o644, tmp_dir: Path | None = None
) -> None:
    """Write ``data`` to ``path`` so that readers see the old bytes or the new, never a mix.

    The temporary file is made beside ``path``, or in ``tmp_dir`` (same filesystem)
    where no temporary name may ever appear beside it (the served tree).
    """
    tmp = (tmp_dir or path.parent) / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if tmp_dir is not None:
            tmp_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise store_error("write", path, exc) from exc


def swap_symlink(link: Path, target: str, tmp_dir: Path) -> None:
    """Point ``link`` at the relative ``target`` in one rename.

    The temporary link is made in ``tmp_dir`` (same filesystem), not beside ``link``,
    so a crash never leaves a stray name in the directory the server watches.
    A symlink's target is stored as text, so it resolves relative to wherever the
    link ends up after the rename.
    """
    tmp = tmp_dir / f"link-{uuid.uuid4().hex}"
    try:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        os.symlink(target, tmp)
        tmp.replace(link)
        fsync_dir(link.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise store_error("swap symlink", link, exc) from exc


def move_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` atomically and persist both parents."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dst)
        fsync_dir(dst.parent)
        if src.parent != dst.parent:
            fsync_dir(src.parent)
    except OSError as exc:
        raise store_error("move", src, exc) from exc


def remove_tree(path: Path, trash: Path) -> None:
    """Remove ``path`` (a tree, file or link) if present.

    A tree is first renamed into ``trash`` (same filesystem), so a crash half-way
    never leaves a half-removed tree under a name a reader would trust.
    """
    if not path.exists() and not path.is_symlink():
        return
    try:
        if path.is_dir() and not path.is_symlink():
            trash.mkdir(parents=True, exist_ok=True)
            doomed = trash / f"{path.name}-{uuid.uuid4().hex[:8]}"
            path.rename(doomed)
            fsync_dir(path.parent)
            shutil.rmtree(doomed)
        else:
            path.unlink()
            fsync_dir(path.parent)
    except OSError as exc:
        raise store_error("remove", path, exc) from exc


def remove_entry(path: Path) -> bool:
    """Remove ``path`` whatever it is (a directory with what it holds; a link, not what
    it points at): a hostile entry where modelsync keeps its own files. False when it
    was already gone."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise store_error("clean", path, exc) from exc
    return True


# Start writing these pages back now, without waiting (sync_file_range(2)).
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range (Linux), looked up once; None elsewhere."""
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], call)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to write these bytes to disk now, without waiting.

    A ranged download calls this for each completed range while later ranges still
    arrive, so the fsync before the swap waits for the last ranges only instead of
    the whole file. Durability is unchanged (the file is still fsynced before use);
    the disk work only starts earlier. Where the call does not exist, nothing happens.
    """
    call = _sync_file_range()
    if call is not None:
        call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
