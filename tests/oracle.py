"""The campaign's oracle: what may be served, checked without modelsync's own code.

Admission (DESIGN.md, invariant 1) says every directory under ``<store>/<model>/``
equals its manifest exactly. This module re-implements that check from the
published format alone (lstat, sha256, Ed25519), so that a bug in modelsync's
verification cannot hide itself: nothing of ``modelsync`` is imported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["Policy", "ServedView", "check_served", "refused_versions"]

MANIFEST = "modelsync-manifest.json"
SIGNATURE = "modelsync-manifest.sig"
MAX_VERSION = 2**63 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[1-9][0-9]*")


@dataclass
class Policy:
    """What the host was configured with: the model's name and its signature policy."""

    model: str
    keys: list[Ed25519PublicKey] = field(default_factory=list)
    require_signature: bool = False


@dataclass
class ServedView:
    active: int | None
    served: list[int]
    violations: list[str]


def _version_name(name: str) -> int | None:
    if not _VERSION.fullmatch(name) or len(name) > 19:
        return None
    value = int(name)
    return value if value <= MAX_VERSION else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _walk(root: Path, rel: str, found: dict[str, Path], problems: list[str]) -> None:
    names = sorted(os.listdir(root / rel if rel else root))
    if rel and not names:
        problems.append(f"empty directory {rel!r}")
    for name in names:
        sub = f"{rel}/{name}" if rel else name
        mode = os.lstat(root / sub).st_mode
        if stat.S_ISLNK(mode):
            problems.append(f"symlink {sub!r} -> {os.readlink(root / sub)!r}")
        elif stat.S_ISDIR(mode):
            _walk(root, sub, found, problems)
        elif stat.S_ISREG(mode):
            found[sub] = root / sub
        else:
            problems.append(f"not a regular file: {sub!r} (mode {oct(mode)})")


def _digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def check_revision(tree: Path, version: int, policy: Policy) -> list[str]:
    """Why ``tree`` may not be served as ``version`` of ``policy.model`` ([] if it may)."""
    problems: list[str] = []
    found: dict[str, Path] = {}
    _walk(tree, "", found, problems)
    if MANIFEST not in found:
        return [*problems, "no manifest (or not a regular file)"]
    raw = found[MANIFEST].read_bytes()
    try:
        doc: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return [*problems, f"manifest is not JSON: {exc}"[:200]]
    if not isinstance(doc, dict):
        return [*problems, "manifest is not an object"]
    if doc.get("format") != 1 or not _is_int(doc.get("format")):
        problems.append(f"manifest format {doc.get('format')!r}")
    if doc.get("model") != policy.model:
        problems.append(f"manifest of model {doc.get('model')!r}, served as {policy.model!r}")
    if not _is_int(doc.get("version")) or doc.get("version") != version:
        problems.append(f"manifest version {str(doc.get('version'))[:40]!r} in directory {version}")
    files = doc.get("files")
    listed: dict[str, tuple[int, str]] = {}
    if not isinstance(files, list):
        problems.append("manifest files is not a list")
        files = []
    for entry in files:
        if not isinstance(entry, dict):
            problems.append("a manifest file entry is not an object")
            continue
        path, size, sha = entry.get("path"), entry.get("size"), entry.get("sha256")
        if not isinstance(path, str) or not isinstance(sha, str) or not _is_int(size):
            problems.append(f"bad manifest entry {str(entry)[:80]}")
            continue
        if path in listed or path in (MANIFEST, SIGNATURE):
            problems.append(f"path listed twice or reserved: {path!r}")
        assert isinstance(size, int)
        if size < 0 or not _HEX64.fullmatch(sha):
            problems.append(f"bad size or sha256 for {path!r}")
        listed[path] = (size, sha)
    for path, (size, sha) in listed.items():
        if path not in found and not os.path.lexists(tree / path):
            problems.append(f"listed file missing: {path!r}")
        elif path not in found:
            pass  # named above: a link, a FIFO or a device where the file should be
        elif _digest(found[path]) != (size, sha):
            problems.append(f"file differs from the manifest: {path!r}")
    allowed = {*listed, MANIFEST, SIGNATURE}
    problems += [f"unlisted file {p!r}" for p in sorted(found) if p not in allowed]
    if policy.require_signature:
        if SIGNATURE not in found:
            problems.append("unsigned, and the model requires signatures")
        elif not _verifies(policy.keys, raw, found[SIGNATURE].read_bytes()):
            problems.append("signature does not verify under the configured keys")
    return problems


def _verifies(keys: list[Ed25519PublicKey], data: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, data)
            return True
        except InvalidSignature:
            continue
    return False


def refused_versions(state_dir: Path, model: str) -> set[int]:
    """The versions the host's state file says it refused (empty if unreadable)."""
    path = state_dir / "state" / f"{model}.json"
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return set()
        doc = json.loads(path.read_bytes()[: 1 << 24])
        return {int(v) for v in (doc.get("refused") or {})}
    except (OSError, ValueError, TypeError, AttributeError):
        return set()


def check_served(
    store: Path, policy: Policy, refused: frozenset[int] | set[int] = frozenset()
) -> ServedView:
    """Every entry of ``<store>/<model>/`` against admission; ``current`` a relative link
    to one of the version directories. ``refused``: versions that must not be served."""
    model_dir = store / policy.model
    violations: list[str] = []
    served: list[int] = []
    active: int | None = None
    try:
        entries = sorted(os.listdir(model_dir))
    except FileNotFoundError:
        return ServedView(None, [], [])
    for name in entries:
        path = model_dir / name
        mode = os.lstat(path).st_mode
        if name == "current":
            target = os.readlink(path) if stat.S_ISLNK(mode) else None
            version = _version_name(target) if target is not None else None
            if version is None or not stat.S_ISDIR(os.lstat(model_dir / str(target)).st_mode):
                violations.append(f"current is not a relative link to a version: {target!r}")
            else:
                active = version
            continue
        version = _version_name(name)
        if version is None or not stat.S_ISDIR(mode):
            violations.append(f"unexpected entry {name!r} (mode {oct(mode)}) in the served tree")
            continue
        served.append(version)
        violations += [f"{name}: {p}" for p in check_revision(path, version, policy)]
        if version in refused:
            violations.append(f"{name}: served although refused")
    return ServedView(active, served, violations)


def _hook(argv: list[str]) -> int:
    """``python -m tests.oracle STORE MODEL LOG [PUBKEY]``: a notify command that judges
    the served tree at the moment the server is told, appending one JSON line to LOG.
    It always exits 0, so that it never changes what modelsync does."""
    from cryptography.hazmat.primitives import serialization

    store, model, log = Path(argv[0]), argv[1], Path(argv[2])
    keys: list[Ed25519PublicKey] = []
    if len(argv) > 3:
        key = serialization.load_pem_public_key(Path(argv[3]).read_bytes())
        assert isinstance(key, Ed25519PublicKey)
        keys.append(key)
    view = check_served(store, Policy(model, keys, bool(keys)))
    line = {"version": os.environ.get("MODELSYNC_VERSION"), "violations": view.violations}
    with log.open("a") as out:
        out.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_hook(sys.argv[1:]))
