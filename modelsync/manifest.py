"""The revision manifest: what a publisher promises and what a reader checks.

``modelsync-manifest.json`` is written last by the publisher; its presence marks a
revision complete. Parsing is strict because the bytes come from a bucket that
modelsync does not control: every path, size and hash is checked before any file
is fetched, and nothing in a manifest can name a location outside the revision.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelsync.errors import ManifestError
from modelsync.oneline import quote

__all__ = [
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "MAX_PATH_BYTES",
    "MAX_VERSION",
    "OMS_NAME",
    "PATH_MAX",
    "SIGNATURE_NAME",
    "FileEntry",
    "Manifest",
    "build_manifest",
    "check_relpath",
    "extra_files",
    "hash_file",
    "parse_version",
    "verify_dir",
]

MANIFEST_NAME = "modelsync-manifest.json"
SIGNATURE_NAME = "modelsync-manifest.sig"
# An OpenSSF Model Signing bundle (modelsync.oms): never a file of the revision itself.
OMS_NAME = "model.sig"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SIGNATURE_NAME, OMS_NAME})
# Generous for a model of 100k files; a bigger manifest is an attack or a mistake.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_FILES = 100_000
# In bytes (UTF-8), as the kernel counts them: a path of 1,023 characters can be 4 KB
# of emoji, more than PATH_MAX (4096) once joined under the staging directory, and
# would fail with ENAMETOOLONG on every pass instead of being refused. 1 KiB leaves
# 3 KiB for the directory a revision is staged and served under.
MAX_PATH_BYTES = 1024
PATH_MAX = 4096
MAX_METADATA_DEPTH = 16
# TensorFlow Serving stores versions as int64.
MAX_VERSION = 2**63 - 1
# What a file (off_t) and a file name (NAME_MAX) can be on Linux filesystems.
MAX_FILE_SIZE = 2**63 - 1
MAX_NAME_BYTES = 255
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The one version grammar (source listings, the served tree, eviction, events): a
# canonical decimal, ASCII digits only, no sign, no leading zero, no whitespace. Matched
# whole (fullmatch: "$" would also match before a trailing newline). Servers read
# names more loosely (TF Serving takes "09" and " 9" as 9), so a name this refuses is
# never a version to modelsync and never stays in the served tree.
_VERSION = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)
_CHUNK = 1024 * 1024


def parse_version(name: str) -> int | None:
    """The version number a directory or prefix name stands for, or None if it is not one."""
    if not _VERSION.fullmatch(name):
        return None
    version = int(name)
    return version if version <= MAX_VERSION else None


def check_relpath(path: object, where: str = "manifest", *, reserved_ok: bool = False) -> str:
    """Return ``path`` if it is a safe relative POSIX path inside a revision, else raise.

    ``reserved_ok`` admits the manifest and signature names (object access, not
    manifest entries).
    """
    if not isinstance(path, str) or not path:
        raise ManifestError(f"{where}: file path must be a non-empty string, got {quote(path)}")
    if len(path) > MAX_PATH_BYTES:
        raise ManifestError(f"{where}: file path longer than {MAX_PATH_BYTES} bytes")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError(f"{where}: file path {quote(path)} is not valid Unicode") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise ManifestError(
            f"{where}: file path of {len(encoded)} bytes, longer than {MAX_PATH_BYTES} bytes"
        )
    if "\\" in path or "\x00" in path:
        raise ManifestError(f"{where}: file path {quote(path)} contains a backslash or NUL")
    if path.startswith("/"):
        raise ManifestError(f"{where}: file path {quote(path)} is absolute")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ManifestError(f"{where}: file path {quote(path)} has an empty, '.' or '..' part")
    if any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise ManifestError(
            f"{where}: file path {quote(path)} has a part longer than {MAX_NAME_BYTES} bytes"
        )
    if path in RESERVED_NAMES and not reserved_ok:
        raise ManifestError(f"{where}: file path {quote(path)} is reserved for modelsync")
    return path


@dataclass(frozen=True)
class FileEntry:
    """One file of a revision: relative path, size in bytes, lowercase hex sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated manifest (format 1)."""

    model: str
    version: int
    created: datetime
    files: tuple[FileEntry, ...]
    metrics: Mapping[str, float] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_bytes(self) -> bytes:
        """The canonical serialisation (what is published and what a signature covers)."""
        doc: dict[str, Any] = {
            "format": 1,
            "model": self.model,
            "version": self.version,
            "created": self.created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.files],
        }
        if self.metrics:
            doc["metrics"] = dict(self.metrics)
        if self.metadata:
            doc["metadata"] = dict(self.metadata)
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> Manifest:
        """Parse and validate manifest bytes; ``where`` names the origin in errors."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{where}: manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            doc = json.loads(data, parse_constant=_reject_constant)
        except RecursionError as exc:
            raise ManifestError(f"{where}: manifest is nested too deeply") from exc
        except (UnicodeDecodeError, ValueError) as exc:
            raise ManifestError(f"{where}: manifest is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ManifestError(f"{where}: manifest must be a JSON object")
        allowed = {"format", "model", "version", "created", "files", "metrics", "metadata"}
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise ManifestError(f"{where}: unknown manifest key {quote(unknown[0])}")
        if type(doc.get("format")) is not int or doc.get("format") != 1:  # true == 1 in Python
            raise ManifestError(f"{where}: unsupported manifest format {quote(doc.get('format'))}")
        model = doc.get("model")
        if not isinstance(model, str) or not model:
            raise ManifestError(f"{where}: 'model' must be a non-empty string")
        version = doc.get("version")
        if type(version) is not int or not 0 < version <= MAX_VERSION:
            raise ManifestError(f"{where}: 'version' must be a positive 64-bit integer")
        created = _parse_time(doc.get("created"), where)
        files = _parse_files(doc.get("files"), where)
        metrics = _parse_metrics(doc.get("metrics", {}), where)
        metadata = doc.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ManifestError(f"{where}: 'metadata' must be a JSON object")
        if _depth(metadata) > MAX_METADATA_DEPTH:
            raise ManifestError(f"{where}: 'metadata' is nested deeper than {MAX_METADATA_DEPTH}")
        return cls(model, version, created, files, metrics, metadata)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise ManifestError(f"{where}: 'created' must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ManifestError(f"{where}: 'created' {quote(value)} is not RFC 3339") from exc
    if parsed.tzinfo is None:
        raise ManifestError(f"{where}: 'created' {quote(value)} lacks a time zone")
    try:
        parsed.astimezone(UTC).timestamp()
    except (OverflowError, ValueError, OSError):
        raise ManifestError(f"{where}: 'created' {quote(value)} is out of range") from None
    if not 1970 <= parsed.astimezone(UTC).year <= 9998:
        raise ManifestError(f"{where}: 'created' {quote(value)} is out of range")
    return parsed


def _parse_files(value: object, where: str) -> tuple[FileEntry, ...]:
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{where}: 'files' must be a non-empty list")
    if len(value) > MAX_FILES:
        raise ManifestError(f"{where}: more than {MAX_FILES} files")
    entries: list[FileEntry] = []
    seen: set[str] = set()
    prefixes: set[str] = set()
    for index, item in enumerate(value):
        at = f"{where}: files[{index}]"
        if not isinstance(item, dict) or set(item) != {"path", "size", "sha256"}:
            raise ManifestError(f"{at} must have exactly 'path', 'size' and 'sha256'")
        path = check_relpath(item["path"], at)
        if path in seen:
            raise ManifestError(f"{at}: path {quote(path)} is listed twice")
        size = item["size"]
        if type(size) is not int or size < 0:
            raise ManifestError(f"{at}: size must be a non-negative integer, got {quote(size)}")
        if size > MAX_FILE_SIZE:
            raise ManifestError(f"{at}: size is larger than a file can be ({MAX_FILE_SIZE})")
        digest = item["sha256"]
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ManifestError(f"{at}: sha256 must be 64 lowercase hex digits")
        seen.add(path)
        parts = path.split("/")
        prefixes.update("/".join(parts[:i]) for i in range(1, len(parts)))
        entries.append(FileEntry(path, size, digest))
    # A path that is also another path's directory cannot be laid out on disk.
    clash = seen & prefixes
    if clash:
        raise ManifestError(
            f"{where}: {quote(sorted(clash)[0])} is listed as a file and a directory"
        )
    return tuple(entries)


def _parse_metrics(value: object, where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: 'metrics' must be a JSON object")
    metrics: dict[str, float] = {}
    for key, number in value.items():
        try:
            # An int of 400 digits is valid JSON and overflows a float: not a metric.
            finite = type(number) in (int, float) and math.isfinite(float(number))
        except OverflowError:
            finite = False
        if not finite:
            raise ManifestError(f"{where}: metric {quote(key)} must be a finite number")
        metrics[key] = float(number)
    return metrics


def _depth(value: object, limit: int = MAX_METADATA_DEPTH) -> int:
    """Nesting depth of ``value``, counted without recursion and only up to ``limit + 1``
    (a hostile document can be nested far deeper than Python's stack)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def hash_file(path: Path) -> tuple[int, str]:
    """Size and sha256 of a local file, read in bounded chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _walk_files(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise ManifestError(f"{path}: symbolic links cannot be published; copy the file")
        if path.is_file() and path.relative_to(root).as_posix() not in RESERVED_NAMES:
            yield path


def build_manifest(
    root: Path,
    model: str,
    version: int,
    *,
    created: datetime,
    metrics: Mapping[str, float] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Manifest:
    """Describe every regular file under ``root`` (the publisher's side)."""
    if not 0 < version <= MAX_VERSION:
        raise ManifestError(f"version {version} must be a positive 64-bit integer")
    entries = []
    for path in _walk_files(root):
        rel = check_relpath(path.relative_to(root).as_posix(), str(root))
        size, digest = hash_file(path)
        entries.append(FileEntry(rel, size, digest))
    if not entries:
        raise ManifestError(f"{root}: no files to publish")
    manifest = Manifest(model, version, created, tuple(entries), metrics or {}, metadata or {})
    # Round-trip so a publisher can never write what a reader would refuse.
    return Manifest.parse(manifest.to_bytes(), str(root))


def verify_dir(root: Path, manifest: Manifest, *, extra_ok: bool = False) -> list[str]:
    """Problems found comparing ``root`` with ``manifest``; an empty list means intact.

    Files present on disk but absent from the manifest count as problems (they are
    unverified bytes the server would load) unless ``extra_ok``: a served revision
    may hold files its server wrote (see ``extra_files``).
    """
    problems: list[str] = []
    for entry in manifest.files:
        path = root / entry.path
        if path.is_symlink() or not path.is_file():
            problems.append(f"{entry.path}: missing")
            continue
        size, digest = hash_file(path)
        if size != entry.size:
            problems.append(f"{entry.path}: size {size}, manifest says {entry.size}")
        elif digest != entry.sha256:
            problems.append(f"{entry.path}: sha256 does not match the manifest")
    if not extra_ok:
        problems.extend(f"{rel}: not in the manifest" for rel in extra_files(root, manifest))
    listed = {entry.path for entry in manifest.files}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        rel = path.relative_to(root).as_posix()
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and rel not in listed:
            # A FIFO, device, socket or link has no bytes to verify and can hang or
            # redirect a reader: never part of an intact revision.
            problems.append(f"{rel}: not a regular file")
    return problems


def extra_files(root: Path, manifest: Manifest) -> list[str]:
    """Files under ``root`` that ``manifest`` does not list (e.g. a server's caches)."""
    listed = {entry.path for entry in manifest.files} | RESERVED_NAMES
    return [
        rel
        for path in sorted(root.rglob("*"))
        if (path.is_file() or path.is_symlink())
        and (rel := path.relative_to(root).as_posix()) not in listed
    ]
