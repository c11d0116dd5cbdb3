"""Hostile input: generated manifests, object names and config files (hypothesis), and
symlink tricks in a local source."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig, default_state_dir
from modelsync.errors import RefusedError
from modelsync.manifest import MANIFEST_NAME
from modelsync.sync import Syncer
from modelsync.volume import Store
from tests.helpers import (
    check_invariants,
    manifest_doc,
    model_files,
    put_revision,
    run_cli,
    sidecar_flags,
)
from tests.properties import (
    CONFIGS,
    JSON,
    MANIFESTS,
    PATHS,
    check_config,
    check_manifest_bytes,
    check_manifest_doc,
    check_object_name,
)


@settings(max_examples=300, deadline=None)
@given(MANIFESTS)
def test_generated_manifests_are_refused_or_safe(doc: dict[str, Any]) -> None:
    """Near-valid manifests: a one-line ManifestError, or paths that stay inside."""
    check_manifest_doc(doc)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_arbitrary_json_is_refused_cleanly(doc: object) -> None:
    """Any JSON value parses to a safe manifest or a ManifestError, nothing else."""
    check_manifest_bytes(json.dumps(doc).encode())


@settings(max_examples=300, deadline=None)
@given(PATHS)
def test_object_names_cannot_escape(name: str) -> None:
    """Every object name is refused or joins to a path inside the staging root."""
    check_object_name(name)


@settings(max_examples=150, deadline=None)
@given(CONFIGS)
def test_generated_configs_load_or_fail_in_one_line(spec: Any) -> None:
    """Wrong types, unknown keys, missing values: a Config or a one-line ConfigError."""
    check_config(spec)


def test_symlinks_out_of_a_local_source_are_refused(tmp_path: Path) -> None:
    """A revision whose file is a link to a host file is refused; nothing is copied."""
    secret = Path("/etc/hostname") if Path("/etc/hostname").exists() else Path("/etc/passwd")
    bucket = tmp_path / "bucket" / "ranker"
    revision = bucket / "1"
    revision.mkdir(parents=True)
    (revision / "saved_model.pb").symlink_to(secret)
    data = secret.read_bytes()
    doc = manifest_doc({"saved_model.pb": data})
    (revision / MANIFEST_NAME).write_text(json.dumps(doc))
    assert hashlib.sha256(data).hexdigest() == doc["files"][0]["sha256"]  # type: ignore[index]
    (bucket / "2").symlink_to("/etc")  # a version directory that is a link out
    store = tmp_path / "store"
    result = Syncer(Store(store, store / ".modelsync")).sync(
        ModelConfig(name="ranker", source=f"file://{bucket}"), CancelToken()
    )
    assert result.active is None
    assert sorted(result.refused) == [1, 2]
    copied = [p for p in store.rglob("*") if p.is_file() and p.name == "saved_model.pb"]
    assert copied == []
    assert not os.path.exists(store / "ranker" / "current")


def _nested(depth: int) -> dict[str, object]:
    doc: dict[str, object] = {}
    for _ in range(depth):
        doc = {"x": doc}
    return doc


@pytest.mark.parametrize(
    ("case", "edit", "words"),
    [
        ("metadata nested 400 deep", lambda d: d.update(metadata=_nested(400)), "nested deeper"),
        ("size of 10^400", lambda d: d["files"][0].update(size=10**400), "larger than a file"),
        ("size of 2^63", lambda d: d["files"][0].update(size=2**63), "larger than a file"),
        ("lone surrogate", lambda d: d["files"][0].update(path="\ud800x"), "not valid Unicode"),
        ("300-byte name", lambda d: d["files"][0].update(path="a" * 300), "longer than 255"),
        ("created at year 1", lambda d: d.update(created="0001-01-01T00:00:00+14:00"), "range"),
        ("another model's revision", lambda d: d.update(model="sandbox"), "model 'sandbox'"),
    ],
)
def test_hostile_manifests_are_refused_in_one_line(
    tmp_path: Path, bucket: Path, case: str, edit: Callable[[dict[str, Any]], None], words: str
) -> None:
    """Issue 11 finding 1 (and 3, 11, 21): each is refused with one line naming it, exit 1,
    no traceback; the next run skips it (exit 0) and the store keeps the active revision."""
    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    assert run_cli("sync", *sidecar_flags(store, bucket)).returncode == 0
    _publish_edited(bucket, 2, edit)
    out = run_cli("sync", *sidecar_flags(store, bucket))
    assert out.returncode == 1, case
    assert "Traceback" not in out.stderr, out.stderr
    refused = [line for line in out.stderr.splitlines() if "revision refused" in line]
    assert len(refused) == 1 and words in refused[0], out.stderr
    again = run_cli("sync", *sidecar_flags(store, bucket))
    assert again.returncode == 0, again.stderr
    assert check_invariants(store, "ranker").active == 1


def test_a_file_swapped_for_a_link_while_being_read_is_never_served(tmp_path: Path) -> None:
    """Issue 11 finding 4: a thread swaps a revision's file for a link to a local secret
    as fast as it can while modelsync reads it (complete_marker mode, no sha256); no
    read ever returns the secret. A FIFO in a revision is refused, not waited on."""
    from modelsync.backends.file import LocalSource
    from modelsync.sources.base import Sink
    from tests.linkswap import raced_reads

    counts = raced_reads(tmp_path, 400)
    assert counts.wrong == 0
    served, refused = counts.served, counts.refused
    revision = tmp_path / "bucket" / "ranker" / "1"
    source = LocalSource(f"file://{revision.parent}")
    assert served and refused  # both sides of the race were hit
    os.mkfifo(revision / "pipe")
    sink = Sink(tmp_path / "fifo-out", 10, "pipe", None)
    with pytest.raises(RefusedError, match="not a regular file"):
        source.fetch(1, "pipe", sink, CancelToken())
    sink.close()


def _bulk_metrics(count: int, name_chars: int, char: str = "x") -> dict[str, float]:
    return {f"m{i:05d}" + char * name_chars: 1.0 for i in range(count)}


@pytest.mark.parametrize(
    ("case", "edit", "words"),
    [
        ("5 MB unknown key", lambda d: d.update({"k" * 5_000_000: 1}), "unknown manifest key"),
        ("5 MB model name", lambda d: d.update(model="m" * 5_000_000), "is a revision of model"),
        (
            "50 metrics named with 100 KB",
            lambda d: d.update(model="other", metrics=_bulk_metrics(50, 100_000)),
            "is a revision of model 'other'",
        ),
        (
            "5,000 metrics named with 3,000 characters",
            lambda d: d.update(model="other", metrics=_bulk_metrics(5_000, 3_000)),
            "is a revision of model 'other'",
        ),
        (
            "metric names JSON escapes to 12 bytes a character",
            lambda d: d.update(model="other", metrics=_bulk_metrics(50, 20_000, "\U0001f600")),
            "is a revision of model 'other'",
        ),
    ],
)
def test_a_manifest_of_huge_text_is_refused_in_one_short_line_and_a_later_one_served(
    tmp_path: Path, bucket: Path, case: str, edit: Callable[[dict[str, Any]], None], words: str
) -> None:
    """Red team round 4a: bucket text of any size (a key, a model name, metric names and
    their count) is refused in one bounded line; the state file stays small, so the
    next `sync` serves a good revision published afterwards (exit 0, its bytes)."""
    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    assert run_cli("sync", *sidecar_flags(store, bucket)).returncode == 0
    _publish_edited(bucket, 3, edit)
    out = run_cli("sync", *sidecar_flags(store, bucket))
    assert out.returncode == 1, case
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert max(len(line) for line in out.stderr.splitlines()) <= 1000, case
    refused = [line for line in out.stderr.splitlines() if "revision refused" in line]
    assert len(refused) == 1 and words in refused[0], refused
    state_file = default_state_dir(store) / "state" / "ranker.json"
    assert state_file.stat().st_size < 128 << 10, (case, state_file.stat().st_size)
    good = model_files(4)
    put_revision(bucket, 4, good)
    again = run_cli("sync", *sidecar_flags(store, bucket))
    assert again.returncode == 0, again.stderr[-2000:]
    assert check_invariants(store, "ranker").active == 4
    for rel, data in good.items():
        assert (store / "ranker" / "4" / rel).read_bytes() == data


def _publish_edited(bucket: Path, version: int, edit: Callable[[dict[str, Any]], None]) -> None:
    """Revision ``version`` in ``bucket`` with its manifest changed by ``edit``."""
    files = model_files(version)
    put_revision(bucket, version, files, manifest=False)
    doc = manifest_doc(files, version=version)
    edit(doc)
    (bucket / str(version) / MANIFEST_NAME).write_text(json.dumps(doc))
