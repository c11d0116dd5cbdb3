from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from modelsync.errors import ManifestError
from modelsync.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    build_manifest,
    check_relpath,
    parse_version,
    verify_dir,
)
from tests.helpers import manifest_doc, model_files, write_tree


def _parse(doc: Any) -> Manifest:
    return Manifest.parse(json.dumps(doc).encode(), "test")


def test_round_trip_keeps_every_field() -> None:
    """A manifest serialised and parsed again is equal to the original."""
    doc = manifest_doc(model_files(1))
    doc["metrics"] = {"ndcg@10": 0.41}
    doc["metadata"] = {"run": "abc", "nested": {"k": [1, 2]}}
    manifest = _parse(doc)
    assert Manifest.parse(manifest.to_bytes(), "again") == manifest
    assert manifest.metrics == {"ndcg@10": 0.41}
    assert manifest.total_size == sum(len(d) for d in model_files(1).values())


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("../escape", "'..'"),
        ("a/../../b", "'..'"),
        ("a\\b", "backslash"),
        ("a//b", "empty"),
        ("a/./b", "'.'"),
        ("", "non-empty"),
        ("modelsync-manifest.json", "reserved"),
    ],
)
def test_bad_paths_are_refused(path: str, why: str) -> None:
    """Paths that could leave the revision or clash with modelsync's names are refused."""
    doc = manifest_doc({"ok": b"x"})
    doc["files"][0]["path"] = path  # type: ignore[index]
    with pytest.raises(ManifestError, match=why):
        _parse(doc)


def _mutate(change: str) -> dict[str, Any]:
    doc: dict[str, Any] = manifest_doc({"a": b"1", "b/c": b"2"})
    files = doc["files"]
    if change == "duplicate":
        files.append(dict(files[0]))
    elif change == "negative":
        files[0]["size"] = -1
    elif change == "float size":
        files[0]["size"] = 1.5
    elif change == "bad hash":
        files[0]["sha256"] = "ABC"
    elif change == "upper hash":
        files[0]["sha256"] = files[0]["sha256"].upper()
    elif change == "extra key":
        files[0]["mode"] = 0o755
    elif change == "file and dir":
        files.append({"path": "b", "size": 0, "sha256": "0" * 64})
    elif change == "format":
        doc["format"] = 2
    elif change == "version zero":
        doc["version"] = 0
    elif change == "version huge":
        doc["version"] = 2**63
    elif change == "version string":
        doc["version"] = "7"
    elif change == "created naive":
        doc["created"] = "2026-11-01T00:00:00"
    elif change == "created junk":
        doc["created"] = "yesterday"
    elif change == "no files":
        doc["files"] = []
    elif change == "unknown key":
        doc["extra"] = 1
    elif change == "metric text":
        doc["metrics"] = {"auc": "high"}
    elif change == "metadata list":
        doc["metadata"] = [1]
    return doc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("duplicate", "listed twice"),
        ("negative", "non-negative integer"),
        ("float size", "non-negative integer"),
        ("bad hash", "64 lowercase hex"),
        ("upper hash", "64 lowercase hex"),
        ("extra key", "exactly"),
        ("file and dir", "file and a directory"),
        ("format", "unsupported manifest format"),
        ("version zero", "positive 64-bit"),
        ("version huge", "positive 64-bit"),
        ("version string", "positive 64-bit"),
        ("created naive", "time zone"),
        ("created junk", "RFC 3339"),
        ("no files", "non-empty list"),
        ("unknown key", "unknown manifest key"),
        ("metric text", "finite number"),
        ("metadata list", "JSON object"),
    ],
)
def test_malformed_manifests_are_refused(change: str, message: str) -> None:
    """Each malformed field gives a one-line error naming it."""
    with pytest.raises(ManifestError, match=message) as info:
        _parse(_mutate(change))
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("test")


def test_not_json_huge_and_deep_manifests_are_refused() -> None:
    """Non-JSON, oversized and deeply nested input fail with a clear message."""
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.parse(b"\xff\xfe not json", "x")
    with pytest.raises(ManifestError, match=r"NaN|not valid JSON"):
        Manifest.parse(b'{"format": NaN}', "x")
    with pytest.raises(ManifestError, match="larger than"):
        Manifest.parse(b" " * (MAX_MANIFEST_BYTES + 1), "x")
    with pytest.raises(ManifestError, match="nested"):
        Manifest.parse(b"[" * 100_000 + b"]" * 100_000, "x")
    doc = manifest_doc({"a": b"1"})
    deep: Any = 1
    for _ in range(40):
        deep = {"k": deep}
    doc["metadata"] = deep
    with pytest.raises(ManifestError, match="nested deeper"):
        _parse(doc)


def test_parse_version_accepts_only_positive_int64_names() -> None:
    """Version directory names are canonical positive 64-bit integers."""
    assert parse_version("1") == 1
    assert parse_version("1700000000") == 1700000000
    assert parse_version(str(2**63 - 1)) == 2**63 - 1
    for bad in ("0", "-1", "01", "1.0", "v1", "", "9" * 20, str(2**63), "1e3", " 1"):
        assert parse_version(bad) is None, bad


@pytest.mark.parametrize(
    "name",
    [
        "1\n",
        "\n1",
        "1 ",
        " 1",
        "\t1",
        "1\r",
        "+1",
        "09",
        "0009",
        "1_0",
        "\u0669",
        "\uff11",
        "1\x00",
    ],
)
def test_parse_version_is_one_exact_grammar(name: str) -> None:
    """Only a canonical decimal is a version: no trailing newline ("$" matches before
    one), whitespace, sign, leading zero, underscore or non-ASCII digit, each of which
    int() or a server's parser would still read as a number."""
    assert parse_version(name) is None


def test_check_relpath_admits_reserved_names_only_when_asked() -> None:
    """Object access may name the manifest; manifest entries may not."""
    assert check_relpath("modelsync-manifest.json", reserved_ok=True)
    with pytest.raises(ManifestError):
        check_relpath("modelsync-manifest.json")


def test_build_and_verify_dir(tmp_path: Path) -> None:
    """A built manifest verifies its tree; a changed, missing or extra file is reported."""
    root = write_tree(tmp_path / "rev", model_files(3))
    manifest = build_manifest(root, "ranker", 5, created=datetime.now(UTC))
    assert [e.path for e in manifest.files] == sorted(model_files(3))
    assert verify_dir(root, manifest) == []
    (root / "saved_model.pb").write_bytes(b"graph-X")
    (root / "variables" / "variables.index").unlink()
    (root / "stray.txt").write_bytes(b"?")
    problems = verify_dir(root, manifest)
    assert "saved_model.pb: sha256 does not match the manifest" in problems
    assert "variables/variables.index: missing" in problems
    assert "stray.txt: not in the manifest" in problems


def test_build_refuses_symlinks_and_empty_dirs(tmp_path: Path) -> None:
    """A publisher cannot ship a link or an empty revision."""
    root = write_tree(tmp_path / "rev", {"a": b"1"})
    (root / "link").symlink_to("/etc/hostname")
    with pytest.raises(ManifestError, match="symbolic links"):
        build_manifest(root, "m", 1, created=datetime.now(UTC))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestError, match="no files"):
        build_manifest(empty, "m", 1, created=datetime.now(UTC))
