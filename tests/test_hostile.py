"""Hostile input: generated manifests, object names and config files (hypothesis), and
symlink tricks in a local source."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import given, settings

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.manifest import MANIFEST_NAME
from modelsync.store import Store
from modelsync.syncer import Syncer
from tests.helpers import manifest_doc
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
