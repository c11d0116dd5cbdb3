"""Entries modelsync did not put in the served tree are moved aside, never served
(issue 11 findings 2, 18, 22)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from modelsync.config import default_state_dir
from modelsync.foreign import evict_foreign, manifest_digest
from modelsync.state import Pending
from modelsync.store import Layout
from modelsync.volume import Store
from tests.helpers import check_invariants, model_files, put_revision, run_cli, sidecar_flags


def _foreign(store: Path) -> list[str]:
    aside = default_state_dir(store) / "foreign" / "ranker"
    return sorted(p.name.rsplit("-", 1)[0] for p in aside.iterdir()) if aside.exists() else []


def _sync(store: Path, bucket: Path, *extra: str) -> str:
    out = run_cli("sync", *sidecar_flags(store, bucket), *extra)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_a_leftover_at_the_next_version_is_moved_aside_not_served(
    tmp_path: Path, bucket: Path
) -> None:
    """A non-empty directory and a link squatting <store>/ranker/2 and /3: the pass moves
    them aside, activates the verified downloads, and the invariants hold."""
    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    (store / "ranker" / "2" / "variables").mkdir(parents=True)
    (store / "ranker" / "2" / "saved_model.pb").write_bytes(b"not from the bucket")
    outside = tmp_path / "outside"
    outside.mkdir()
    (store / "ranker" / "3").symlink_to(outside)
    put_revision(bucket, 2, model_files(2))
    put_revision(bucket, 3, model_files(3))
    log = _sync(store, bucket)
    assert "moved a foreign entry out of the served tree" in log
    assert _foreign(store) == ["2", "3"]
    view = check_invariants(store, "ranker")
    assert (view.violations, view.active) == ([], 3)
    assert outside.exists() and not any(outside.iterdir())


def test_recovery_never_activates_a_tree_it_did_not_verify(tmp_path: Path, bucket: Path) -> None:
    """A journal of an activation of version 2 and, in its place, another tree with a
    valid manifest of version 2: recovery moves it aside and keeps version 1 active."""
    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    ms = Store(store, default_state_dir(store)).model("ranker")
    planted = put_revision(tmp_path / "elsewhere", 2, model_files(99))
    state = ms.load_state()
    state.pending = Pending(2, 1, manifest_sha256="0" * 64)
    ms.save_state(state)
    planted.rename(store / "ranker" / "2")
    os.remove(store / "ranker" / "current")
    (store / "ranker" / "current").symlink_to("2")
    _sync(store, bucket)
    assert os.readlink(store / "ranker" / "current") == "1"
    assert _foreign(store) == ["2"]
    assert check_invariants(store, "ranker").violations == []
    assert ms.load_state().pending is None
    assert manifest_digest(store / "ranker" / "1")


def test_junk_versions_are_not_rollback_targets(tmp_path: Path, bucket: Path) -> None:
    """A junk <store>/ranker/99 (no manifest) is moved aside and cannot be rolled back to."""
    store = tmp_path / "data" / "models"
    for version in (1, 2):
        put_revision(bucket, version, model_files(version))
        _sync(store, bucket)
    (store / "ranker" / "99").mkdir()
    (store / "ranker" / "99" / "junk").write_text("x")
    _sync(store, bucket)
    flags = ["--store", str(store), "--source", f"file://{bucket}"]
    out = run_cli("rollback", "ranker", "--to", "99", *flags)
    assert out.returncode == 1 and "not a retained revision" in out.stderr
    assert _foreign(store) == ["99"]
    assert check_invariants(store, "ranker").active == 2


def test_a_current_that_is_not_a_link_is_healed(tmp_path: Path, bucket: Path) -> None:
    """`current` replaced by a file: /readyz-style reads see no active version instead of
    failing, and the next pass moves it aside and serves the newest revision again."""
    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    os.remove(store / "ranker" / "current")
    (store / "ranker" / "current").write_text("1")
    status = json.loads(run_cli("status", "--json", *sidecar_flags(store, bucket)).stdout)
    assert status["models"][0]["active_version"] is None
    _sync(store, bucket)
    assert os.readlink(store / "ranker" / "current") == "1"
    # With no valid pointer, the tree at 1 is a leftover like any other: moved aside,
    # and the revision admitted again from the bucket.
    assert _foreign(store) == ["1", "current"]
    assert check_invariants(store, "ranker").violations == []


# Names a server reads as a version (TF Serving's safe_strto64 takes surrounding
# whitespace, a sign and leading zeros; Python's int() also takes "_" and non-ASCII
# digits) that are not modelsync's one canonical grammar.
_VERSION_LIKE = ["09", " 9", "9 ", "+9", "0009", "9\t", "9_0", "\u0669", "1\n"]


def test_version_like_names_are_moved_aside_even_beside_the_active_version(
    tmp_path: Path, bucket: Path
) -> None:
    """Directories planted as 09, ' 9', '9 ', '1\\n'... (a server would load them as a
    version; '1\\n' once even counted as the active 1): a pass with nothing new moves
    every one aside, and every other entry modelsync does not own (a FIFO, a stray
    file, a link, a junk directory) too; `current` and version 1 stay."""
    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    _sync(store, bucket)
    model_dir = store / "ranker"
    for name in _VERSION_LIKE:
        (model_dir / name).mkdir()
        (model_dir / name / "saved_model.pb").write_bytes(b"PLANTED, never verified")
    (model_dir / "junk").mkdir()
    (model_dir / "10").write_bytes(b"a file, not a version directory")
    (model_dir / "notes").symlink_to("1")
    os.mkfifo(model_dir / "11")
    log = _sync(store, bucket)
    assert "moved a foreign entry out of the served tree" in log
    assert sorted(os.listdir(model_dir)) == ["1", "current"]
    assert _foreign(store) == sorted([*_VERSION_LIKE, "10", "11", "junk", "notes"])
    view = check_invariants(store, "ranker")
    assert (view.violations, view.active) == ([], 1)


def _tree(model_dir: Path) -> None:
    """A Triton-like model directory: version 1, its config.pbtxt, and planted entries."""
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text('backend: "python"')
    for name in ("09", " 9", "README"):
        (model_dir / name).write_text("planted")
    (model_dir / "config.d").mkdir()


def test_declared_model_files_are_the_only_files_kept(tmp_path: Path) -> None:
    """With the layout's model-level files declared, exactly those regular files stay
    (config.pbtxt); every other file, version-like or not, is moved aside."""
    model_dir, aside = tmp_path / "m", tmp_path / "aside"
    _tree(model_dir)
    moved = evict_foreign(
        model_dir, tmp_path / "state-current", aside, {1}, owned_files=("config.pbtxt",)
    )
    assert sorted(os.listdir(model_dir)) == ["1", "config.pbtxt"]
    assert sorted(p.name.rsplit("-", 1)[0] for p in moved) == [" 9", "09", "README", "config.d"]


def test_a_store_keeps_its_model_files_and_evicts_version_like_files(tmp_path: Path) -> None:
    """Through the store itself (Triton layout): config.pbtxt stays; a file or directory
    a server could read as a version goes, whatever its type."""
    store = Store(tmp_path / "models", tmp_path / "state")
    ms = store.model("m", Layout(link_current=False, model_files=("config.pbtxt",)))
    _tree(ms.dir)
    (ms.dir / "1 ").mkdir()
    state = ms.load_state()
    state.pending = Pending(1, None, manifest_sha256="0" * 64)  # 1 may be there
    moved = ms.evict_foreign(state)
    assert {"09", " 9", "1 ", "config.d"} <= {p.name.rsplit("-", 1)[0] for p in moved}
    assert {"1", "config.pbtxt"} <= set(os.listdir(ms.dir))
    assert not {"09", " 9", "1 ", "config.d"} & set(os.listdir(ms.dir))
