"""Class 1: roads into the served tree other than a fresh download.

A retained copy (``<state>/revisions/<model>/N``) or a leftover at ``<store>/<model>/N``
is tampered with, then a channel points back to N, ``modelsync rollback --to N`` asks
for it, a journal in the state file claims a crash left it half-activated, or the
target of a new download already holds the bucket's revision plus one extra entry.
Whatever the road, the oracle must find only exact, authentic, unrefused trees.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from pathlib import Path

from bench.variants.core import Ctx
from bench.variants.world import MANIFEST, SIGNATURE, Run, World, files_for, manifest_for

__all__ = ["ROADS", "TAMPERS", "roads"]

ROADS = (
    "channel-retained",
    "channel-leftover",
    "rollback-retained",
    "rollback-leftover",
    "journal",
    "target-leftover",
)
# Tampers that only mean something when the model requires signatures.
SIGNED_ONLY = ("forged-manifest", "unsigned")
TAMPERS = (
    "flip",
    "extra-file",
    "extra-link",
    "fifo",
    "device",
    "empty-dir",
    "missing-file",
    "other-model",
    "other-version",
    *SIGNED_ONLY,
)
EXTRAS = ("extra-file", "extra-link", "fifo", "empty-dir")


def _listed(tree: Path) -> list[str]:
    doc = json.loads((tree / MANIFEST).read_bytes())
    return [e["path"] for e in doc["files"]]


def _rewrite(path: Path, data: bytes) -> None:
    # A new inode: retained and served copies may share inodes (hard links).
    path.unlink()
    path.write_bytes(data)


def tamper(world: World, tree: Path, kind: str, ctx: Ctx) -> str:
    """Damage ``tree`` in one way; returns what was done."""
    rng = ctx.rng
    listed = [p for p in _listed(tree) if (tree / p).stat().st_size > 0]
    victim = rng.choice(listed)
    doc = json.loads((tree / MANIFEST).read_bytes())
    if kind == "flip":
        data = bytearray((tree / victim).read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        _rewrite(tree / victim, bytes(data))
        return f"flipped a bit of {victim}"
    if kind == "extra-file":
        name = rng.choice(["extra.bin", "variables/extra", "saved_model.pbtxt", ".hidden"])
        (tree / name).write_bytes(b"unlisted")
        return f"added unlisted file {name}"
    if kind == "extra-link":
        name, target = rng.choice(["link", "variables/link"]), rng.choice(["/etc", "../../.."])
        os.symlink(target, tree / name)
        return f"added link {name} -> {target}"
    if kind == "fifo" or kind == "device":
        name = rng.choice(["pipe", "variables/pipe"])
        try:
            if kind == "device":
                os.mknod(tree / name, stat.S_IFCHR | 0o600, os.makedev(1, 3))
            else:
                os.mkfifo(tree / name)
        except OSError:
            os.mkfifo(tree / name)
            kind = "fifo"
        return f"added {kind} {name}"
    if kind == "empty-dir":
        name = rng.choice(["empty", "variables/empty", "assets"])
        (tree / name).mkdir()
        return f"added empty directory {name}"
    if kind == "missing-file":
        (tree / victim).unlink()
        return f"removed listed file {victim}"
    if kind == "forged-manifest":
        forged = b"forged " + (tree / victim).read_bytes()
        _rewrite(tree / victim, forged)
        for entry in doc["files"]:
            if entry["path"] == victim:
                entry["size"], entry["sha256"] = len(forged), hashlib.sha256(forged).hexdigest()
        _rewrite(tree / MANIFEST, json.dumps(doc).encode())
        return f"changed {victim} and forged the manifest to match (old signature kept)"
    if kind == "unsigned":
        (tree / SIGNATURE).unlink(missing_ok=True)
        return "removed the signature"
    if kind in ("other-model", "other-version"):
        if kind == "other-model":
            doc["model"] = rng.choice(["sandbox", "ranker-old", "Ranker"])
        else:
            doc["version"] = rng.choice([doc["version"] + 1, doc["version"] + 40, 7])
        raw = json.dumps(doc).encode()
        _rewrite(tree / MANIFEST, raw)
        if (tree / SIGNATURE).exists():
            _rewrite(tree / SIGNATURE, world.key.sign(raw))  # authentic, but not this one
        return f"manifest of {kind}: model {doc['model']!r} version {doc['version']}, re-signed"
    raise AssertionError(kind)


def _copy(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, symlinks=True, copy_function=shutil.copy2)


def _pass(ctx: Ctx, world: World, by_daemon: bool) -> Run:
    """One pass by the CLI, or two passes' worth of the daemon (then SIGTERM)."""
    if not by_daemon:
        return world.sync()
    daemon = world.daemon(interval="1s")
    ctx.cleanups.append(daemon.terminate)
    started = time.monotonic()
    daemon.wait_up()
    time.sleep(3)
    took, code = daemon.terminate()
    if code is None or took > 5:
        ctx.fail(f"SIGTERM: daemon {'killed' if code is None else code} after {took:.1f} s")
    log = (world.root / "daemon.log").read_text(errors="replace")
    return Run(
        ["run"], code if code is not None else -9, "", log, time.monotonic() - started, False
    )


def roads(ctx: Ctx) -> None:
    rng = ctx.rng
    road = rng.choice(ROADS)
    kind = rng.choice(EXTRAS if road == "target-leftover" else TAMPERS)
    signed = kind in SIGNED_ONLY or rng.random() < 0.4
    channel = road.startswith("channel") or (road != "target-leftover" and rng.random() < 0.3)
    by_daemon = not road.startswith("rollback") and rng.random() < 0.25
    ctx.describe(
        f"road={road} tamper={kind} signed={signed} channel={channel} "
        f"via={'daemon' if by_daemon else 'cli'}"
    )
    world = ctx.world(channel="prod" if channel else None, signed=signed)
    world.publish(1, files_for(rng, 1))
    if channel:
        world.publish(2, files_for(rng, 2))
        world.pointer({"stable": 1})
        world.sync()
        world.pointer({"stable": 2})
        second = world.sync()
    else:
        world.sync()
        world.publish(2, files_for(rng, 2))
        second = world.sync()
    if world.active() != 2 or not (world.cache_dir / "1").is_dir():
        ctx.fail(
            f"setup: expected 2 active and 1 retained; active {world.active()}: {second.tail()}"
        )
        return
    before = world.digest(2)
    retained = world.cache_dir / "1"
    leftover = world.model_dir / "1"
    if road == "target-leftover":
        files = files_for(rng, 3)
        world.publish(3, files)
        raw = json.dumps(manifest_for(files, 3)).encode()
        leftover = world.model_dir / "3"
        leftover.mkdir()
        for name, data in files.items():
            (leftover / name).parent.mkdir(parents=True, exist_ok=True)
            (leftover / name).write_bytes(data)
        (leftover / MANIFEST).write_bytes(raw)
        if signed:
            (leftover / SIGNATURE).write_bytes(world.key.sign(raw))
        done = tamper(world, leftover, kind, ctx)
        if channel:
            world.pointer({"stable": 3})
        ctx.describe(f"{ctx.trial.input}: bucket's revision 3 at the target, plus: {done}")
        run = _pass(ctx, world, by_daemon)
    elif road.endswith("retained"):
        done = tamper(world, retained, kind, ctx)
        ctx.describe(f"{ctx.trial.input}: retained copy of 1: {done}")
        if road == "channel-retained":
            world.pointer({"stable": 1})
            run = _pass(ctx, world, by_daemon)
        else:
            run = world.cli("rollback", "ranker", "--to", "1")
    elif road.endswith("leftover"):
        _copy(retained, leftover)
        if rng.random() < 0.5:
            shutil.rmtree(retained)
        done = tamper(world, leftover, kind, ctx)
        ctx.describe(f"{ctx.trial.input}: leftover <store>/ranker/1: {done}")
        if road == "channel-leftover":
            world.pointer({"stable": 1})
            run = _pass(ctx, world, by_daemon)
        else:
            run = world.cli("rollback", "ranker", "--to", "1")
    else:  # journal: a crash "left" a tampered tree half-activated
        _copy(retained, leftover)
        done = tamper(world, leftover, kind, ctx)
        digest = ""
        if (leftover / MANIFEST).exists() and rng.random() < 0.8:
            digest = hashlib.sha256((leftover / MANIFEST).read_bytes()).hexdigest()
        swapped = rng.random() < 0.5
        if swapped:
            os.symlink("1", world.model_dir / "current.tmp")
            os.replace(world.model_dir / "current.tmp", world.model_dir / "current")
        doc = json.loads(world.state_file.read_bytes())
        doc["pending"] = {
            "version": 1,
            "previous": 2,
            "phase": "activating",
            "retire_to": "quarantine",
            "reason": "",
            "verdict": "",
            "manifest_sha256": digest,
        }
        world.state_file.write_text(json.dumps(doc))
        ctx.describe(
            f"{ctx.trial.input}: journal -> tampered <store>/ranker/1 ({done}); "
            f"journal digest {'of the tampered manifest' if digest else 'empty'}; "
            f"current {'already swapped' if swapped else 'not swapped'}"
        )
        run = _pass(ctx, world, by_daemon)
    ctx.judge_run(run)
    ctx.check(world, road)
    active = world.active()
    if active == 2 and world.digest(2) != before:
        ctx.fail(f"{road}: the active revision 2 changed on disk")
    if active is None:
        ctx.fail(f"{road}: nothing active afterwards (was 2)")
