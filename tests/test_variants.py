"""The variant campaign's harness (bench/variants): its oracle, its exit status, and a
small slice of its trials on file://, each replayed from its seed.

``FIXED`` are the trials that broke an invariant before the issue-21 fixes (admission,
the deadline layer, signed pointers, canary-bound markers, link-safe control writes):
kept as regressions, replayed from their seeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.variants.core import Record, Result, Trial
from bench.variants.hostile import _pointer, hostile_manifest
from bench.variants.runner import CLASSES, main, plan, summary
from bench.variants.world import Endpoints, files_for
from tests.oracle import MANIFEST, SIGNATURE, Policy, check_served

KEY = Ed25519PrivateKey.generate()


def _revision(store: Path, version: int, *, model: str = "ranker", sign: bool = False) -> Path:
    tree = store / "ranker" / str(version)
    (tree / "variables").mkdir(parents=True)
    files = {"saved_model.pb": b"graph", "variables/shard-0": b"weights"}
    for name, data in files.items():
        (tree / name).write_bytes(data)
    doc = {
        "format": 1,
        "model": model,
        "version": version,
        "created": "2026-11-01T00:00:00Z",
        "files": [
            {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for p, d in files.items()
        ],
    }
    raw = json.dumps(doc).encode()
    (tree / MANIFEST).write_bytes(raw)
    if sign:
        (tree / SIGNATURE).write_bytes(KEY.sign(raw))
    os.symlink(str(version), store / "ranker" / "current")
    return tree


def _problems(store: Path, signed: bool = False, refused: frozenset[int] = frozenset()) -> str:
    policy = Policy("ranker", [KEY.public_key()] if signed else [], signed)
    return " | ".join(check_served(store, policy, refused).violations)


def test_oracle_accepts_an_exact_revision(tmp_path: Path) -> None:
    """A tree equal to its (signed) manifest, behind current, passes."""
    _revision(tmp_path, 3, sign=True)
    assert _problems(tmp_path, signed=True) == ""


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda t: (t / "extra").write_bytes(b"x"), "unlisted file 'extra'"),
        (lambda t: os.symlink("/etc", t / "link"), "symlink 'link'"),
        (lambda t: os.mkfifo(t / "variables" / "pipe"), "not a regular file"),
        (lambda t: (t / "empty").mkdir(), "empty directory 'empty'"),
        (lambda t: (t / "saved_model.pb").unlink(), "listed file missing"),
        (lambda t: (t / "saved_model.pb").write_bytes(b"graph!"), "differs from the manifest"),
        (lambda t: (t / SIGNATURE).unlink(), "unsigned"),
        (lambda t: (t / SIGNATURE).write_bytes(b"\0" * 64), "does not verify"),
    ],
)
def test_oracle_refuses_what_admission_refuses(tmp_path: Path, damage: object, said: str) -> None:
    """Each kind of damage to a served tree is named by the oracle."""
    tree = _revision(tmp_path, 3, sign=True)
    damage(tree)  # type: ignore[operator]
    assert said in _problems(tmp_path, signed=True)


def test_oracle_checks_model_version_and_refusals(tmp_path: Path) -> None:
    """Another model's manifest, a refused version and a stray entry are violations."""
    _revision(tmp_path, 3, model="sandbox")
    (tmp_path / "ranker" / "notes.txt").write_text("x")
    said = _problems(tmp_path, refused=frozenset({3}))
    assert "model 'sandbox'" in said and "served although refused" in said
    assert "unexpected entry 'notes.txt'" in said


def test_exit_status_counts_enforced_failures_only() -> None:
    """A failed trial fails the run; a failed trial of a pending class does not."""
    failed = Result(Trial("roads", "file", 1), ["served tree: x"], 0.1, pending=False)
    pending = Result(Trial("signed", "file", 2), ["moved"], 0.1, pending=True)
    assert summary(Record([pending]), 0, 1.0) == 0
    assert summary(Record([pending, failed]), 0, 1.0) == 1


def test_short_form_covers_every_class_and_backend() -> None:
    """--short plans trials of every class, on all four backends where meaningful."""
    args = type("Args", (), {"cls": None, "backend": None, "trial_seed": None})()
    args.trials, args.long, args.seed = None, False, 7
    trials = plan(args)
    assert {c for c, _, _ in trials} == set(CLASSES)
    assert {b for c, b, _ in trials if c == "hostile"} == {"file", "gs", "s3", "az"}
    assert len({s for _, _, s in trials}) == len(trials)  # every trial its own seed


def test_one_trial_again_from_its_seed() -> None:
    """`--trial-seed` replays one trial (a manifest naming another model, its version a
    string, a duplicate key: refused, then the next revision served); it exits 0."""
    assert main(["--class", "hostile", "--backend", "file", "--trial-seed", "346174374"]) == 0


def _run(cls: str, seed: int, tmp_path: Path) -> list[str]:
    spec = CLASSES[cls]
    trial = Trial(cls, "file", seed)
    return Record().run(trial, spec.generator, tmp_path, Endpoints(), pending=False).problems


PASSING = [
    ("roads", 1946362798),  # a journal pointing at a tree with a FIFO in it: not activated
    ("edges", 1995636171),  # a .part linked to a directory outside
]
# Broke before the issue-21 fixes (bench/variants, docs/reliability.md).
FIXED = [
    ("roads", 224323076, "rollback --to onto a retained copy with a flipped bit"),
    ("roads", 1882375140, "a leftover at the target: the bucket's revision plus one file"),
    ("roads", 1872723634, "a channel back to a retained copy re-signed as another model"),
    ("roads", 1097, "crash recovery activates a journalled tree with an unlisted file"),
    ("hostile", 516236466, "a manifest with format true at version 2**63-1 is served"),
    ("hostile", 13, "a canary percent of -10**400 crashes the pass (OverflowError)"),
    ("edges", 1927587610, "a finished partial file that links outside is served as a link"),
    ("edges", 1612050305, "a report written through a _reports/<v>/failed symlink"),
    ("edges", 2052024645, "a failure marker planted before the canary started halts it"),
    ("signed", 1907474360, "an unsigned channel pointer is followed"),
]


@pytest.mark.parametrize(("cls", "seed"), PASSING)
def test_trial_holds(cls: str, seed: int, tmp_path: Path) -> None:
    """These generated trials keep every invariant on the current code."""
    assert _run(cls, seed, tmp_path) == []


@pytest.mark.parametrize(("cls", "seed", "why"), FIXED)
def test_trial_that_broke_before_the_fixes_holds(
    cls: str, seed: int, why: str, tmp_path: Path
) -> None:
    """Each of these trials found an invariant broken before the issue-21 fixes."""
    assert _run(cls, seed, tmp_path) == [], why


# Broke before the fixes of the third red-team round (docs/reliability.md): class
# ``lies`` on the network backends, each run by the campaign's own CLI (it starts the
# emulator it needs).
LIES = [
    ("az", 1000, "the manifest gzip-encoded once refused revision 2 for good"),
    ("s3", 1001, "one ranged GET answered 200 refused revision 2 for good"),
    ("gs", 1006, "one damaged range was kept for resume: every later pass failed"),
    ("s3", 1009, "another range's bytes, once, were kept: every later pass failed"),
    ("gs", 1010, "complete_marker: a changed byte with X-Goog-Hash dropped was served"),
    # The fourth round: an answer that says its checksum does not apply (kind EXCUSED).
    ("s3", 1535966086, "complete_marker: a changed byte under a claimed SSE-KMS was served"),
    ("s3", 1234800438, "complete_marker: a changed byte under a claimed SSE-C was served"),
]


# Class ``blockers`` (the fourth round): revisions above a good one that could not be
# brought in ended the pass, or, refused on their download, each cost a pass.
BLOCKERS = [
    ("file", 464005807, "two wrong-bytes revisions above the good one: nothing stood in"),
    ("file", 1993622827, "long paths and wrong bytes above the good one: nothing stood in"),
    # The fifth round (seed 9187): three gzip-stored revisions each spent the whole
    # retry schedule, and the pass's deadline ran out before the good one below.
    ("s3", 492222631, "three encoded revisions above the good one: the deadline ran out"),
]


@pytest.mark.parametrize(("backend", "seed", "why"), BLOCKERS)
def test_revisions_that_broke_the_stand_in_before_the_fixes_hold(
    backend: str, seed: int, why: str
) -> None:
    """Each of these trials of class ``blockers`` broke an invariant before the fixes."""
    argv = ["--class", "blockers", "--backend", backend, "--trial-seed", str(seed)]
    assert main(argv) == 0, why


@pytest.mark.parametrize(("backend", "seed", "why"), LIES)
def test_a_lie_that_broke_before_the_fixes_holds(backend: str, seed: int, why: str) -> None:
    """Each of these trials of class ``lies`` broke an invariant before the fixes."""
    argv = ["--class", "lies", "--backend", backend, "--trial-seed", str(seed)]
    assert main(argv) == 0, why


def test_every_generated_hostile_input_builds() -> None:
    """The hostile generator itself never trips over its own mutations (a "files" mutation
    that turned the list into a dict before a "size" mutation picked an entry was a
    harness error in CI, seed 154431509): 2,000 manifests and pointers are generated,
    each is bytes the daemon has to refuse."""
    for seed in range(2000):
        rng = random.Random(seed)
        version = rng.choice([2, 2**63 - 1, 1795444309123456789])
        raw, said = hostile_manifest(rng, files_for(rng, version), version, gated=seed % 2 == 0)
        assert isinstance(raw, bytes) and raw and said
        pointer, how = _pointer(rng, 1)
        assert isinstance(pointer, bytes) and how
