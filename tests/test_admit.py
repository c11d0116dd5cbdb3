"""Admission (modelsync/sync/admit.py): every road into the served tree, attacked by
generated tampering, serves only trees that equal their bucket manifest exactly."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelsync.cancel import CancelToken
from modelsync.channel import Pointer
from modelsync.checkconfig import VerifyConfig
from modelsync.config import ModelConfig
from modelsync.errors import StoreError
from modelsync.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
from modelsync.publish import publish
from modelsync.signing import generate_keypair
from modelsync.sources import open_source
from modelsync.state import Pending
from modelsync.sync import Outcome, Syncer
from modelsync.sync.admit import tree_problems
from modelsync.verified import VerifiedFiles
from modelsync.volume import Store
from tests.helpers import FAST_RETRY, model_files, write_tree
from tests.properties import HOSTILE

REPO = Path(__file__).resolve().parent.parent

TAMPERS = (
    "extra_file",
    "extra_dir",
    "empty_dir",
    "symlink",
    "fifo",
    "missing_file",
    "flipped_byte",
    "forged_manifest",
    "other_model",
    "other_version",
    "no_manifest",
    "file_is_link",
)


def tamper(tree: Path, kind: str, seed: int = 0) -> None:
    """Change a revision's tree the way an attacker with the disk (or a bug) could."""
    manifest = json.loads((tree / MANIFEST_NAME).read_text())
    victim = tree / manifest["files"][seed % len(manifest["files"])]["path"]
    if kind == "extra_file":
        (tree / f"extra-{seed}.bin").write_bytes(b"unverified")
    elif kind == "extra_dir":
        (tree / f"d{seed}").mkdir()
        (tree / f"d{seed}" / "x").write_bytes(b"x")
    elif kind == "empty_dir":
        (tree / f"empty{seed}").mkdir()
    elif kind == "symlink":
        os.symlink("/etc/passwd", tree / f"link{seed}")
    elif kind == "fifo":
        os.mkfifo(tree / f"fifo{seed}")
    elif kind == "missing_file":
        victim.unlink()
    elif kind == "flipped_byte":
        data = bytearray(victim.read_bytes())
        data[seed % len(data)] ^= 0xFF
        victim.write_bytes(bytes(data))
    elif kind == "forged_manifest":
        # The manifest rewritten to match tampered bytes: integrity alone would pass.
        victim.write_bytes(b"evil bytes")
        import hashlib

        for entry in manifest["files"]:
            if tree / entry["path"] == victim:
                entry["size"], entry["sha256"] = 10, hashlib.sha256(b"evil bytes").hexdigest()
        (tree / MANIFEST_NAME).write_text(json.dumps(manifest))
    elif kind == "other_model":
        manifest["model"] = "someone-else"
        (tree / MANIFEST_NAME).write_text(json.dumps(manifest))
    elif kind == "other_version":
        manifest["version"] = manifest["version"] + 1000
        (tree / MANIFEST_NAME).write_text(json.dumps(manifest))
    elif kind == "no_manifest":
        (tree / MANIFEST_NAME).unlink()
    elif kind == "file_is_link":
        victim.unlink()
        os.symlink("/dev/zero", victim)
    else:
        raise AssertionError(kind)


def served_is_exact(store: Path, bucket: Path, model: str) -> list[str]:
    """Every version directory served equals the bucket's manifest of that version,
    hashed afresh (no recorded verification trusted)."""
    problems: list[str] = []
    for entry in sorted((store / model).iterdir()):
        if not entry.name.isdigit():
            continue
        raw = (bucket / entry.name / MANIFEST_NAME).read_bytes()
        if (entry / MANIFEST_NAME).read_bytes() != raw:
            problems.append(f"{entry.name}: manifest differs from the bucket's")
            continue
        manifest = Manifest.parse(raw, str(entry))
        verified = VerifiedFiles(store.parent / "fresh-records.json")
        problems += [f"{entry.name}: {p}" for p in tree_problems(entry, manifest, verified)]
    return problems


def _bucket(tmp_path: Path, versions: tuple[int, ...] = (1, 2)) -> tuple[Path, str]:
    url = f"file://{tmp_path}/bucket/m"
    for version in versions:
        src = write_tree(tmp_path / f"src{version}", model_files(version))
        publish(src, url, version=version, metrics={"auc": 0.9})
    return tmp_path / "bucket" / "m", url


def _syncer(tmp_path: Path) -> tuple[Syncer, Path]:
    store = tmp_path / "data" / "models"
    return Syncer(Store(store, tmp_path / "data" / ".state"), retry=FAST_RETRY), store


def _pointer(url: str, stable: int) -> None:
    open_source(url).put_control("_channels/prod.json", Pointer(stable=stable).to_bytes())


@pytest.mark.parametrize("kind", TAMPERS)
def test_a_channel_going_back_never_serves_a_tampered_retained_copy(
    tmp_path: Path, kind: str
) -> None:
    """Back to version 1 whose retained copy was tampered with: the copy is moved aside
    and version 1 is fetched again, served exactly as the bucket has it."""
    bucket, url = _bucket(tmp_path)
    syncer, store = _syncer(tmp_path)
    model = ModelConfig(name="m", source=url, channel="prod")
    for stable in (1, 2):
        _pointer(url, stable)
        assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    retained = tmp_path / "data" / ".state" / "revisions" / "m" / "1"
    tamper(retained, kind)
    _pointer(url, 1)
    result = syncer.sync(model, CancelToken())
    assert result.outcome is Outcome.ACTIVATED, result.error
    assert os.readlink(store / "m" / "current") == "1"
    assert served_is_exact(store, bucket, "m") == []
    assert any(p.name.startswith("1-") for p in (tmp_path / "data/.state/foreign/m").iterdir())


@pytest.mark.parametrize("kind", TAMPERS)
def test_a_manual_rollback_refuses_a_tampered_copy(tmp_path: Path, kind: str) -> None:
    """`rollback --to 1` onto a tampered copy changes nothing and says why in one line."""
    bucket, url = _bucket(tmp_path, (1,))
    syncer, store = _syncer(tmp_path)
    model = ModelConfig(name="m", source=url)
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    publish(write_tree(tmp_path / "src2", model_files(2)), url, version=2)
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    tamper(tmp_path / "data" / ".state" / "revisions" / "m" / "1", kind)
    with pytest.raises(StoreError) as caught:
        syncer.rollback_to(model, 1, CancelToken())
    assert "\n" not in str(caught.value) and "version 1" in str(caught.value)
    assert os.readlink(store / "m" / "current") == "2"
    assert served_is_exact(store, bucket, "m") == []


def _serving_1_with_2_planted(tmp_path: Path) -> tuple[Path, Syncer, Path, ModelConfig]:
    """Version 1 served; the bucket's version 2 then published and copied, as it is, to
    <store>/m/2 (a leftover, or the tree a journal names)."""
    bucket, url = _bucket(tmp_path)
    syncer, store = _syncer(tmp_path)
    model = ModelConfig(name="m", source=url)
    shutil.rmtree(bucket / "2")
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    publish(write_tree(tmp_path / "src2", model_files(2)), url, version=2)
    shutil.copytree(bucket / "2", store / "m" / "2")
    return bucket, syncer, store, model


@pytest.mark.parametrize("kind", TAMPERS)
def test_a_leftover_at_the_target_is_never_taken_for_the_revision(
    tmp_path: Path, kind: str
) -> None:
    """The bucket's own revision 2 planted at <store>/m/2, then tampered: the pass moves
    it aside and serves what it fetched and admitted."""
    bucket, syncer, store, model = _serving_1_with_2_planted(tmp_path)
    tamper(store / "m" / "2", kind)
    result = syncer.sync(model, CancelToken())
    assert result.outcome is Outcome.ACTIVATED, result.error
    assert os.readlink(store / "m" / "current") == "2"
    assert served_is_exact(store, bucket, "m") == []


@pytest.mark.parametrize("kind", TAMPERS)
def test_crash_recovery_admits_the_journalled_tree_again(tmp_path: Path, kind: str) -> None:
    """A journal whose tree was tampered with after the crash: recovery undoes it, and
    the next choice is fetched and admitted."""
    bucket, syncer, store, model = _serving_1_with_2_planted(tmp_path)
    import hashlib

    digest = hashlib.sha256((bucket / "2" / MANIFEST_NAME).read_bytes()).hexdigest()
    ms = syncer.store.model("m", model.layout)
    state = ms.load_state()
    state.pending = Pending(2, 1, manifest_sha256=digest)
    ms.save_state(state)
    tamper(store / "m" / "2", kind)
    syncer.sync(model, CancelToken())
    assert served_is_exact(store, bucket, "m") == []
    assert os.readlink(store / "m" / "current") in ("1", "2")


def test_an_unsigned_retained_copy_is_not_served_under_require_signature(tmp_path: Path) -> None:
    """Signed revisions; the retained copy loses its signature: `rollback --to` refuses
    it, because the manifest must be authentic under the model's keys now."""
    private, public = tmp_path / "k", tmp_path / "k.pub"
    generate_keypair(private, public)
    url = f"file://{tmp_path}/bucket/m"
    syncer, store = _syncer(tmp_path)
    verify = VerifyConfig(public_keys=(public,), require_signature=True)
    model = ModelConfig(name="m", source=url, verify=verify)
    for version in (1, 2):
        src = write_tree(tmp_path / f"src{version}", model_files(version))
        publish(src, url, version=version, sign_key=private)
        assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    (tmp_path / "data" / ".state" / "revisions" / "m" / "1" / SIGNATURE_NAME).unlink()
    with pytest.raises(StoreError, match="unsigned"):
        syncer.rollback_to(model, 1, CancelToken())
    assert os.readlink(store / "m" / "current") == "2"
    assert served_is_exact(store, tmp_path / "bucket" / "m", "m") == []


def test_only_admission_makes_an_admitted() -> None:
    """The one door, readable in the code: only admit.py constructs an Admitted or names
    the ticket, and the store's two tree-placing calls take an Admitted."""
    offenders = []
    for path in (REPO / "modelsync").rglob("*.py"):
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            name = node.id if isinstance(node, ast.Name) else None
            name = node.attr if isinstance(node, ast.Attribute) else name
            if name == "ADMISSION_TICKET" and rel not in (
                "modelsync/admitted.py",
                "modelsync/sync/admit.py",
            ):
                offenders.append(rel)
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "Admitted"
                and rel != "modelsync/sync/admit.py"
            ):
                offenders.append(rel)
    assert offenders == []
    store = ast.parse((REPO / "modelsync" / "store.py").read_text())
    placing = {
        f.name: ast.unparse(f.args.args[1].annotation)  # type: ignore[arg-type]
        for f in ast.walk(store)
        if isinstance(f, ast.FunctionDef) and f.name in ("activate", "resume")
    }
    assert placing == {"activate": "Admitted", "resume": "Admitted"}


def _hostile_doc(bucket: Path, version: int, field: str, value: object) -> None:
    """A revision whose manifest carries ``value`` where ``field`` goes."""
    files = model_files(version)
    tree = write_tree(bucket / str(version), files)
    import hashlib

    doc: dict[str, object] = {
        "format": 1,
        "model": "m",
        "version": version,
        "created": "2026-01-01T00:00:00Z",
        "files": [
            {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
            for p, b in sorted(files.items())
        ],
        "metrics": {"auc": 0.9},
    }
    if field == "metric":
        doc["metrics"] = {"auc": value}
    elif field == "size":
        doc["files"][0]["size"] = value  # type: ignore[index]
    elif field == "created":
        doc["created"] = value
    else:
        doc[field] = value
    (tree / MANIFEST_NAME).write_text(json.dumps(doc, default=str))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    field=st.sampled_from(["metric", "size", "created", "metadata", "model"]),
    value=HOSTILE | st.integers(min_value=10**300, max_value=10**400),
    version=st.sampled_from([9 * 10**18, 2**63 - 1, 1_700_000_000_123_456_789]),
)
def test_a_hostile_newest_revision_never_blocks_the_next_good_one(
    tmp_path_factory: pytest.TempPathFactory, field: str, value: object, version: int
) -> None:
    """Liveness: a hostile newest revision (values that overflow, surprise or mislead),
    then a good one published: the good one is served within two passes, and nothing
    the admission would refuse is ever served."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    bucket, url = _bucket(tmp_path, (1,))
    syncer, store = _syncer(tmp_path)
    model = ModelConfig(name="m", source=url, gate={"auc": 0.5})
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    try:
        _hostile_doc(bucket, version, field, value)
    except (ValueError, OverflowError, TypeError):
        return  # not even writable as JSON: nothing reaches a host
    first = syncer.sync(model, CancelToken())
    assert first.outcome is not Outcome.FAILED or "unexpected" not in (first.error or "")
    publish(write_tree(tmp_path / "good", model_files(5)), url, version=5, metrics={"auc": 0.9})
    results = [syncer.sync(model, CancelToken()) for _ in range(2)]
    served = os.readlink(store / "m" / "current")
    assert served in ("5", str(version)), results
    if served == str(version):
        # Only a hostile-looking revision that is in fact valid may be served.
        assert served_is_exact(store, bucket, "m") == []
    else:
        assert served_is_exact(store, bucket, "m") == []
        assert all(r.outcome is not Outcome.FAILED for r in results), results
