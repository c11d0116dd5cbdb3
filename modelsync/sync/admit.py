"""The one door into ``<store>/<model>/``: admission.

Every road by which a revision reaches the served directory — a new download, a
channel going back to a retained copy, ``modelsync rollback --to``, the recovery of
an activation a crash interrupted — ends here, and ``ModelStore.activate`` /
``resume`` accept only the ``Admitted`` this function returns (modelsync.admitted).
At that moment, and whatever the tree's history:

- the revision is not one this host refused;
- the tree is a real directory whose manifest is authentic under the model's policy
  *now* (the signature checked against today's keys; required when
  ``require_signature``), bound to this model and this version, within the gate
  and limits;
- the tree equals the manifest exactly: every listed file present, regular, with
  its size and sha256; nothing unlisted — no extra file, directory, link, FIFO or
  device. A file is hashed unless modelsync itself recorded its verification and it
  has not changed since (modelsync.verified).

A leftover at the target path is never taken for the revision: the store moves it
aside unless it is the admitted tree itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from modelsync.admitted import ADMISSION_TICKET, Admitted
from modelsync.errors import RefusedError, StoreError
from modelsync.fsutil import read_regular
from modelsync.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, SIGNATURE_NAME, Manifest
from modelsync.oms import MAX_BUNDLE_BYTES, OMS_NAME
from modelsync.sync.context import PassContext
from modelsync.sync.policy.candidate import (
    MAX_SIGNATURE_BYTES,
    check_manifest,
    check_signature,
    guard,
)
from modelsync.verified import FileIdentity, VerifiedFiles

__all__ = ["DOWNLOAD", "admit", "tree_problems"]

# The road of a tree just fetched from the bucket (its manifest came from there).
DOWNLOAD = "download"

_CHUNK = 1024 * 1024


def admit(
    ctx: PassContext,
    version: int,
    tree: Path,
    road: str,
    *,
    journalled: str | None = None,
    verified: VerifiedFiles | None = None,
) -> Admitted:
    """Check ``tree`` as revision ``version`` of the pass's model; RefusedError (one
    line naming the tree, the road and the first problem) if it may not be served.

    ``journalled``: the manifest digest an interrupted activation recorded; recovery
    admits that revision and no other. ``verified``: the records a fetch just added to
    (read once, saved here), else read from the state directory.
    """
    model = ctx.model
    where = f"model {model.name} version {version} ({road}: {tree})"
    reason = ctx.state.refused.get(version)
    if reason is not None:
        raise RefusedError(f"{where}: refused on this host before: {reason}")
    with guard(where):
        try:
            info = os.lstat(tree)
        except OSError as exc:
            raise RefusedError(f"{where}: cannot be read ({exc.strerror or exc})") from None
        if not stat.S_ISDIR(info.st_mode):
            raise RefusedError(f"{where}: not a directory")
        raw = _read(tree / MANIFEST_NAME, MAX_MANIFEST_BYTES, where)
        if raw is None:
            raise RefusedError(f"{where}: has no manifest")
        digest = hashlib.sha256(raw).hexdigest()
        if journalled and digest != journalled:
            raise RefusedError(f"{where}: is not the revision that was verified (manifest differs)")
        if road != DOWNLOAD:
            # A local copy carries the manifest it was fetched with, or it is not that
            # revision: a manifest rewritten to match rewritten files is consistent,
            # and only this record (or a signature) tells it from the bucket's.
            fetched = ctx.state.manifests.get(version)
            if fetched is None and not journalled:
                raise RefusedError(f"{where}: no record of this copy being fetched here")
            if digest != (fetched or journalled):
                raise RefusedError(f"{where}: manifest is not the one fetched from the bucket")
        bundle = _read(tree / OMS_NAME, MAX_BUNDLE_BYTES, where) if model.verify.oms else None
        signed_files: str | None = None
        if bundle is not None:
            from modelsync.sync.policy.oms_revision import check_oms_tree

            manifest, signed_files = check_oms_tree(
                model, where, version, raw, bundle, ctx.state.oms_admitted
            )
        else:
            signature = _read(tree / SIGNATURE_NAME, MAX_SIGNATURE_BYTES, where)
            check_signature(model, f"{where}: {SIGNATURE_NAME}", raw, signature)
            manifest = check_manifest(model, f"{where}: {MANIFEST_NAME}", version, raw)
        if verified is None:
            verified = VerifiedFiles.load(ctx.ms.verified_path)
        try:
            problems = tree_problems(
                tree, manifest, verified, ctx.cancel.check, oms=bundle is not None
            )
        finally:
            verified.save()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RefusedError(f"{where}: does not equal its manifest: {problems[0]}{more}")
    if road == DOWNLOAD:
        ctx.state.manifests[version] = digest  # saved with the activation's journal
    if signed_files is not None:
        # Any road: a revision admitted before this record existed gets one too.
        ctx.state.record_oms(version, signed_files)
    return Admitted(version, tree, digest, road, ADMISSION_TICKET)


def _read(path: Path, limit: int, where: str) -> bytes | None:
    try:
        return read_regular(path, limit)
    except FileNotFoundError:
        return None
    except StoreError as exc:
        raise RefusedError(f"{where}: {exc}") from None


def tree_problems(
    tree: Path,
    manifest: Manifest,
    verified: VerifiedFiles,
    check: Callable[[], None] | None = None,
    *,
    oms: bool = False,
) -> list[str]:
    """What keeps ``tree`` from equalling ``manifest`` exactly ([] when it does).

    ``check`` is called between files (the pass's cancellation); ``oms``: the tree
    carries the ``model.sig`` its manifest was derived from."""
    files = {entry.path: entry for entry in manifest.files}
    dirs = {
        "/".join(parts[:i])
        for parts in (path.split("/") for path in files)
        for i in range(1, len(parts))
    }
    beside = (MANIFEST_NAME, SIGNATURE_NAME, OMS_NAME) if oms else (MANIFEST_NAME, SIGNATURE_NAME)
    found, problems = _walk(tree, files, dirs, len(files) + len(dirs) + 3, beside)
    for path, entry in files.items():
        if check is not None:
            check()
        st = found.get(path)
        if st is None:
            problems.append(f"{path}: missing")
        elif st.st_size != entry.size:
            problems.append(f"{path}: {st.st_size} bytes, the manifest says {entry.size}")
        elif not verified.known(st, entry.sha256):
            problems.extend(_hash_check(tree / path, st, entry.sha256, verified, path))
    return problems


class _Seen(NamedTuple):
    """What the walk keeps of a listed file's lstat (a FileIdentity): 270 bytes, where
    the whole stat result is 640, for each of up to 100,000 files."""

    st_dev: int
    st_ino: int
    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int


def _walk(
    tree: Path, files: Mapping[str, object], dirs: set[str], most: int, beside: tuple[str, ...]
) -> tuple[dict[str, _Seen], list[str]]:
    """The regular files under ``tree`` that the manifest lists, and every entry it
    does not (reported, never followed)."""
    found: dict[str, _Seen] = {}
    problems: list[str] = []
    stack, seen = [""], 0
    while stack:
        rel_dir = stack.pop()
        with os.scandir(tree / rel_dir if rel_dir else tree) as entries:
            for entry in entries:
                seen += 1
                if seen > most:
                    problems.append("more entries than the manifest lists")
                    return found, problems
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if rel in dirs:
                        stack.append(rel)
                    else:
                        problems.append(f"{rel}/: a directory not in the manifest")
                elif not stat.S_ISREG(st.st_mode):
                    problems.append(f"{rel}: {_kind(st.st_mode)}, not a regular file")
                elif rel in files:
                    found[rel] = _Seen(
                        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
                    )
                elif rel not in beside:
                    problems.append(f"{rel}: not in the manifest")
    return found, problems


def _hash_check(
    path: Path, before: FileIdentity, sha256: str, verified: VerifiedFiles, rel: str
) -> list[str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return [f"{rel}: cannot be read ({exc.strerror or exc})"]
    with contextlib.closing(os.fdopen(fd, "rb")) as handle:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            return [f"{rel}: changed while it was checked"]
        digest = hashlib.sha256()
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
        after = os.fstat(fd)
    if digest.hexdigest() != sha256:
        return [f"{rel}: sha256 does not match the manifest"]
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (
        opened.st_size,
        opened.st_mtime_ns,
        opened.st_ctime_ns,
    ):
        verified.record(after, sha256)  # unchanged while hashed: the bytes are these
    return []


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"
