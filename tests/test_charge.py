"""A failure on a chosen revision's road is charged to that revision (modelsync.sync.charge):
refused when the revision alone decides it, else deferred while an older one stands in;
and deferrals are remembered, so a pass does not walk the same ones again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from modelsync.manifest import MANIFEST_NAME
from tests.backends import S3Backend, put_objects
from tests.helpers import (
    check_invariants,
    manifest_doc,
    model_files,
    put_revision,
    run_cli,
    sidecar_flags,
)

DEFERRED = "a newer revision could not be fetched"


def _served(store: Path) -> str:
    return (store / "ranker" / "current").resolve().name


def _state_file(store: Path) -> Path:
    # The CLI's state directory sits beside the store (never inside the served tree).
    return store.parent / ".modelsync-store" / "state" / "ranker.json"


def _put_manifest(bucket: Path, version: int, doc: dict[str, object]) -> None:
    (bucket / str(version)).mkdir(parents=True, exist_ok=True)
    (bucket / str(version) / MANIFEST_NAME).write_text(json.dumps(doc))


def test_a_newest_revision_larger_than_the_free_space_lets_the_one_below_stand_in(
    tmp_path: Path, store: Path, bucket: Path
) -> None:
    """Revision 3's manifest declares more bytes than the volume has free, but fewer
    than its size (nothing of it uploaded): the real space check passes it over with a
    one-line reason (space may free up: not refused), and revision 2 is served."""
    put_revision(bucket, 2, model_files(2))
    usage = shutil.disk_usage(tmp_path)
    doc = manifest_doc(model_files(3), version=3)
    doc["files"][0]["size"] = (usage.free + usage.total) // 2  # type: ignore[index]
    _put_manifest(bucket, 3, doc)
    out = run_cli("--log-format", "console", "sync", *sidecar_flags(store, bucket))
    assert out.returncode == 1, out.stderr
    assert _served(store) == "2"
    plain = [line for line in out.stderr.splitlines() if line.startswith("modelsync: model")]
    assert len(plain) == 1 and "version 3 could not be fetched" in plain[0], out.stderr
    assert "free at" in plain[0] and "serving 2 meanwhile" in plain[0]
    assert "Traceback" not in out.stderr + out.stdout
    state = json.loads((_state_file(store)).read_text())
    assert state["refused"] == {}
    assert check_invariants(store, "ranker").violations == []


def test_a_path_longer_than_path_max_once_staged_is_refused_in_one_line(
    store: Path, bucket: Path
) -> None:
    """A path of 1,023 characters (16 parts of 252 bytes of emoji: 4,047 bytes) passed
    every limit counted in characters and failed with ENAMETOOLONG on every pass. It is
    refused by its bytes, one line, and revision 2 below it is served."""
    put_revision(bucket, 2, model_files(2))
    long_path = "/".join(["\U0001f600" * 63] * 16)
    doc = manifest_doc({long_path: b"x"}, version=3)
    _put_manifest(bucket, 3, doc)
    out = run_cli("--log-format", "console", "sync", *sidecar_flags(store, bucket))
    assert out.returncode == 1, out.stderr  # a refusal: the command says so
    assert _served(store) == "2"
    state = json.loads((_state_file(store)).read_text())
    assert list(state["refused"]) == ["3"]
    reason = state["refused"]["3"]
    assert "4047 bytes, longer than 1024 bytes" in reason and "\n" not in reason
    assert "Traceback" not in out.stderr + out.stdout
    assert check_invariants(store, "ranker").violations == []


def test_an_oversized_mlserver_settings_file_is_refused_by_its_size(
    tmp_path: Path, store: Path, bucket: Path
) -> None:
    """server = "mlserver": revision 2's model-settings.json is 2 MiB (valid JSON naming
    the model, padded). It was read whole each pass (1.2 GB: MemoryError, every pass);
    it is now refused before any read, in one line naming the file, and 1 is served."""
    settings = json.dumps({"name": "ranker", "implementation": "x"}).encode()
    put_revision(bucket, 1, {"model-settings.json": settings, "model.bin": b"one"})
    padded = settings[:-1] + b" " * (2 << 20) + b"}"
    put_revision(bucket, 2, {"model-settings.json": padded, "model.bin": b"two"})
    config = tmp_path / "modelsync.toml"
    config.write_text(
        f'store = "{store}"\n[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
        'server = "mlserver"\nserver_url = "http://127.0.0.1:9"\n'
    )
    first = run_cli("--log-format", "console", "sync", "--config", str(config))
    assert "Traceback" not in first.stderr + first.stdout
    state = json.loads((_state_file(store)).read_text())
    assert list(state["refused"]) == ["2"], first.stderr
    assert "model-settings.json" in state["refused"]["2"]
    assert "more than the 1048576" in state["refused"]["2"]
    # A refused newest ends its pass; the next one brings in the one below.
    second = run_cli("--log-format", "console", "sync", "--config", str(config))
    assert "Traceback" not in second.stderr + second.stdout
    assert (store / "ranker" / "1" / "model.bin").read_bytes() == b"one"
    assert not (store / "ranker" / "2").exists()


def test_two_newest_s3_revisions_with_a_gzip_stored_object_let_the_one_below_stand_in(
    store: Path, s3_backend: S3Backend
) -> None:
    """Revisions 2 and 3 each hold one object stored with Content-Encoding: gzip (a
    retryable error each, set by the bucket writer). A second such error ended the
    pass; the listing still answers, so each is charged to its revision and 1 stands in.
    Each such object is retried once, not for the whole schedule (errors.OddAnswer)."""
    put_objects(s3_backend, 1, model_files(1))
    client = s3_backend._client()
    for version in (2, 3):
        files = model_files(version)
        for name, data in files.items():
            extra = {"ContentEncoding": "gzip"} if name == "saved_model.pb" else {}
            key = f"{s3_backend.prefix}/{version}/{name}"
            client.put_object(Bucket=s3_backend.bucket, Key=key, Body=data, **extra)
        doc = manifest_doc(files, version=version)
        s3_backend.put(f"{version}/{MANIFEST_NAME}", json.dumps(doc).encode())
    out = run_cli(
        "--log-format",
        "console",
        "sync",
        *sidecar_flags(store, s3_backend.url),
        env=s3_backend.env(),
        timeout=300,
    )
    assert out.returncode == 1, out.stderr
    assert _served(store) == "1"
    assert (store / "ranker" / "current" / "saved_model.pb").read_bytes() == b"graph-1"
    logged = out.stderr + out.stdout
    assert logged.count(DEFERRED) == 2 and "Content-Encoding" in logged
    assert logged.count("retrying") == 2, logged
    assert check_invariants(store, "ranker").violations == []


def test_deferrals_are_remembered_so_a_pass_does_not_walk_them_again(
    store: Path, bucket: Path
) -> None:
    """300 manifests above good revision 2, each naming an object the bucket does not
    hold: the first `sync` serves 2; the next one tries only the newest of them again
    (a fix to it is still picked up) instead of walking all 300 from the top."""
    put_revision(bucket, 2, model_files(2))
    top = 2**63 - 1
    for version in range(top - 299, top + 1):
        _put_manifest(bucket, version, manifest_doc({"gone.bin": b"x"}, version=version))
    first = run_cli("--log-format", "console", "sync", *sidecar_flags(store, bucket))
    assert first.returncode == 1 and _served(store) == "2", first.stderr
    assert (first.stderr + first.stdout).count(DEFERRED) == 300
    second = run_cli("--log-format", "console", "sync", *sidecar_flags(store, bucket))
    assert second.returncode == 1 and _served(store) == "2", second.stderr
    logged = second.stderr + second.stdout
    assert logged.count(DEFERRED) == 1 and f"version={top}" in logged
    state = json.loads((_state_file(store)).read_text())
    assert (state["deferrals"]["newest"], state["deferrals"]["floor"]) == (top, top - 299)
    assert state["refused"] == {}
    # The newest is fixed: the next pass brings it in.
    (bucket / str(top) / "gone.bin").write_bytes(b"x")
    third = run_cli("--log-format", "console", "sync", *sidecar_flags(store, bucket))
    assert third.returncode == 0, third.stderr
    assert _served(store) == str(top)
    assert check_invariants(store, "ranker").violations == []
