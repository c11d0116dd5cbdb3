"""Class 2: hostile revisions and channel pointers must be refused, never block.

Each trial generates one hostile newest revision (1-3 mutations of a good manifest:
overflowing numbers, NaN, wrong types, odd keys, versions near 2**63-1) or one
hostile channel pointer, runs a pass, then publishes a good revision and expects it
served within two passes. A fraction of trials run the daemon instead of the CLI and
also watch ``/readyz``: it must not say ready while nothing verified is active.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from bench.variants.core import Ctx
from bench.variants.world import MANIFEST, Run, World, files_for, manifest_for

__all__ = ["MUTATIONS", "POINTERS", "hostile"]

BIG = "9" * 400  # a 400-digit integer, written as raw JSON text
# modelsync.state.STATE_LIMIT (the campaign imports nothing of modelsync): a bigger
# state file fails every later pass.
STATE_LIMIT = 4 << 20
# A log line: its fields, and a reason or error cut to one line (modelsync.oneline).
LONGEST_LINE = 2000
Raw = dict[str, str]  # placeholder string -> raw JSON text replacing it


def _raw(raw: Raw, text: str) -> str:
    key = f"@@raw{len(raw)}@@"
    raw[key] = text
    return key


def _number(rng: random.Random, raw: Raw) -> Any:
    return rng.choice(
        [
            _raw(raw, BIG),
            _raw(raw, "-" + BIG),
            _raw(raw, "1e400"),
            _raw(raw, "-1e400"),
            _raw(raw, "NaN"),
            _raw(raw, "Infinity"),
            _raw(raw, "1" + "0" * 20),
            2**63,
            2**64 + 1,
            -(2**63) - 1,
            -1,
            True,
            None,
            "12",
            [1],
            {"v": 1},
            1.5,
        ]
    )


def _m_metric(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    name = rng.choice(["ndcg@10", "auc", "x" * 300, "", "\u202e", "a.b"])
    doc.setdefault("metrics", {})[name] = value = _number(rng, raw)
    return f"metric {name[:12]!r}={raw.get(str(value), value)!r:.40}"


def _m_size(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    entry = rng.choice(doc["files"])
    entry["size"] = value = _number(rng, raw)
    return f"size of {entry['path']}={raw.get(str(value), value)!r:.40}"


def _m_sha(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    entry = rng.choice(doc["files"])
    entry["sha256"] = rng.choice(["", 0, None, "g" * 64, "0" * 65])
    return f"sha256={entry['sha256']!r:.20}"


def _m_version(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    v = doc["version"]
    doc["version"] = value = rng.choice(
        [str(v), True, v + 1, -v, 0, 2**63 - 1, 2**63, _raw(raw, BIG), None, [v]]
    )
    return f"version field={raw.get(str(value), value)!r:.30}"


def _m_model(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    doc["model"] = rng.choice([None, 7, "", "RANKER", "ranker\x00", "ranker ", ["ranker"]])
    return f"model={doc['model']!r}"


def _m_format(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    doc["format"] = rng.choice([2, "1", True, 0, _raw(raw, BIG), None])
    return f"format={raw.get(str(doc['format']), doc['format'])!r:.20}"


def _m_created(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    doc["created"] = value = rng.choice(
        [1795444309123456789, "9999-99-99", _raw(raw, "1e400"), None, -1, "", 1.5]
    )
    return f"created={raw.get(str(value), value)!r:.30}"


def _m_files(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    how = rng.choice(["dict", "dup", "nokey", "dotdot", "abs", "backslash", "empty", "str"])
    files = doc["files"]
    if how == "dict":
        doc["files"] = {e["path"]: e for e in files}
    elif how == "dup":
        files.append(dict(files[0]))
    elif how == "nokey":
        del files[0][rng.choice(["path", "size", "sha256"])]
    elif how == "str":
        files[0] = "saved_model.pb"
    else:
        files[0]["path"] = {
            "dotdot": "../escape",
            "abs": "/etc/passwd",
            "backslash": "a\\b",
            "empty": "",
        }[how]
    return f"files: {how}"


def _m_keys(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    key = rng.choice(["__proto__", "files ", "\x00", "Version", "x" * 1000])
    doc[key] = _number(rng, raw)
    return f"odd key {key[:12]!r}"


def _m_deep(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    depth = rng.choice([1000, 100_000])
    doc["metadata"] = _raw(raw, "[" * depth + "]" * depth)
    return f"metadata nested {depth} deep"


def _m_huge(doc: dict[str, Any], rng: random.Random, raw: Raw) -> str:
    """Bucket text of a random huge size where errors quote it and the state keeps it
    (a refused revision's reason and metrics): it must never grow the state file past
    its limit nor one printed line past a screen (red team round 4a)."""
    size = int(10 ** rng.uniform(3, 6.7))  # 1,000 to 5,000,000 characters
    char = rng.choice(["x", "\U0001f600", "\n"])  # JSON escapes the emoji to 12 bytes
    where = rng.choice(["key", "model", "metric names", "metric count"])
    if where == "key":
        doc[char * size] = 1
    elif where == "model":
        doc["model"] = char * size
    else:
        # Another model's revision: refused after parsing, its metrics kept for status.
        doc["model"] = "someone-else"
        count = rng.randint(51, 5000) if where == "metric count" else rng.randint(1, 60)
        name = char * max(1, min(size, 4_000_000 // count))
        doc["metrics"] = {f"{i:05d}{name}": 1.0 for i in range(count)}
    return f"huge {where}: {size} x {char!r}"


MUTATIONS: dict[str, Callable[[dict[str, Any], random.Random, Raw], str]] = {
    "metric": _m_metric,
    "size": _m_size,
    "sha256": _m_sha,
    "version": _m_version,
    "model": _m_model,
    "format": _m_format,
    "created": _m_created,
    "files": _m_files,
    "keys": _m_keys,
    "deep": _m_deep,
    "huge": _m_huge,
}
# Mutations after which the manifest may still be valid (when the value happens to be
# fine): these are combined with one that is not.
_MAYBE_FINE = {"metric", "keys", "created"}


def hostile_manifest(
    rng: random.Random, files: dict[str, bytes], version: int, *, gated: bool = False
) -> tuple[bytes, str]:
    doc = manifest_for(files, version)
    if gated:  # passes the gate unless a mutation says otherwise
        doc["metrics"] = {"ndcg@10": 0.5}
    raw: Raw = {}
    kinds = rng.sample(sorted(MUTATIONS), rng.randint(1, 3))
    if set(kinds) <= _MAYBE_FINE:
        kinds.append(rng.choice(sorted(set(MUTATIONS) - _MAYBE_FINE)))
    # "files" can turn the list into a dict or a string, or drop an entry's path: the
    # mutations that pick an entry (size, sha256) must run before it, not trip on it.
    kinds.sort(key=lambda kind: kind == "files")
    said = [MUTATIONS[k](doc, rng, raw) for k in kinds]
    text = json.dumps(doc)
    for key, value in raw.items():
        text = text.replace(json.dumps(key), value)
    if rng.random() < 0.15:  # a duplicate key: the second one wins in most parsers
        text = text[:-1] + ', "version": ' + json.dumps(version) + "}"
        said.append("duplicate version key")
    return text.encode(), "; ".join(said)


def _pointer(rng: random.Random, good: int) -> tuple[bytes, str]:
    raw: Raw = {}
    how = rng.choice(sorted(POINTERS))
    doc = POINTERS[how](rng, good, raw)
    if isinstance(doc, bytes):
        return doc, how
    text = json.dumps(doc)
    for key, value in raw.items():
        text = text.replace(json.dumps(key), value)
    return text.encode(), f"{how}: {text[:80]}"


POINTERS: dict[str, Callable[[random.Random, int, Raw], dict[str, Any] | bytes]] = {
    "percent": lambda r, g, raw: {
        "stable": g,
        "canary": {"version": g + 1, "percent": _number(r, raw)},
    },
    "stable": lambda r, g, raw: {"stable": _number(r, raw)},
    "canary-version": lambda r, g, raw: {
        "stable": g,
        "canary": {"version": r.choice([2**63, 2**63 - 1, _raw(raw, BIG), 0, "3"]), "percent": 50},
    },
    "halt_after": lambda r, g, raw: {"stable": g, "halt_after": _number(r, raw)},
    "on_halt": lambda r, g, raw: {"stable": g, "on_halt": r.choice(["", "explode", 1, None])},
    "unknown-key": lambda r, g, raw: {"stable": g, r.choice(["stabel", "__proto__", ""]): 1},
    "not-json": lambda r, g, raw: r.choice([b"", b"{", b"\xff\xfe", b"null", b"[]", b"1" * 5000]),
    "huge": lambda r, g, raw: {"stable": g, "updated_by": "x" * (5 << 20)},
    "deep": lambda r, g, raw: {"stable": g, "updated_by": _raw(raw, "[" * 50000 + "]" * 50000)},
    "missing-version": lambda r, g, raw: {"stable": g + 1000},
}


def _good(world: World, rng: random.Random, version: int) -> None:
    files = files_for(rng, version)
    doc = manifest_for(files, version)
    if world.gate:
        doc["metrics"] = {"ndcg@10": 0.5}
    world.publish(version, files, doc=doc)
    if world.channel:
        world.pointer({"stable": version})


def _served_within_two(ctx: Ctx, world: World, version: int, where: str) -> None:
    for _ in range(2):
        run = world.sync()
        if world.active() == version:
            return
    ctx.fail(
        f"{where}: liveness: good revision {version} not served after two passes "
        f"(active {world.active()}): {run.tail()}"
    )


def hostile(ctx: Ctx) -> None:
    rng = ctx.rng
    channel = rng.random() < 0.35
    daemon = not channel and rng.random() < 0.2
    # A gate compares the manifest's metrics, max_bytes adds up its sizes: two more
    # places an overflowing number meets arithmetic.
    # (drawn from a stream of their own, so that adding them changed no other input)
    limits = random.Random(ctx.trial.seed ^ 0x5EED)
    gate = {"ndcg@10": limits.choice([0.0, 0.3])} if limits.random() < 0.5 else None
    max_bytes = limits.choice([None, 10**6, 2**63 - 1])
    world = ctx.world(channel="prod" if channel else None, gate=gate, max_bytes=max_bytes)
    if daemon:
        _daemon_trial(ctx, world)
        return
    _good(world, rng, 1)
    world.sync()
    if world.active() != 1:
        ctx.fail(f"setup: good revision 1 not served (active {world.active()})")
        return
    before = world.digest(1)
    if channel:
        raw, said = _pointer(rng, 1)
        ctx.describe(f"channel pointer {said}; gate {gate}, max_bytes {max_bytes}")
        world.pointer(raw)
        good = 2
    else:
        version = rng.choice([2, 2, 2, 2**63 - 1, 1795444309123456789, 2**31])
        files = files_for(rng, version)
        raw, said = hostile_manifest(rng, files, version, gated=bool(gate))
        ctx.describe(f"revision {version}: {said}; gate {gate}, max_bytes {max_bytes}")
        world.refused.add(version)
        for name, data in files.items():
            world.put(f"{version}/{name}", data)
        world.put(f"{version}/{MANIFEST}", raw)
        good = 2 if version > 2 else 3
    run = world.sync(timeout=60)
    ctx.judge_run(run)
    ctx.check(world, "after the hostile input")
    _state_bounded(ctx, world, run)
    if world.active() != 1 or world.digest(1) != before:
        ctx.fail(f"store not intact: active {world.active()} (was 1)")
    _good(world, rng, good)
    _served_within_two(ctx, world, good, "after the hostile input")
    ctx.check(world, "after the good revision")


def _state_bounded(ctx: Ctx, world: World, run: Run) -> None:
    """The state file stays loadable (under STATE_LIMIT) and every printed line short,
    whatever size of text the hostile input carried."""
    size = world.state_file.stat().st_size if world.state_file.exists() else 0
    if size >= STATE_LIMIT:
        ctx.fail(f"state file of {size} bytes: every later pass fails to read it")
    longest = max((len(line) for line in run.stderr.splitlines()), default=0)
    if longest > LONGEST_LINE:
        ctx.fail(f"a printed line of {longest} characters (one line is {LONGEST_LINE} at most)")


def _daemon_trial(ctx: Ctx, world: World) -> None:
    """A fresh host whose only revision is hostile: /readyz must not say ready; the good
    revision published next is served by the daemon within two passes."""
    rng = ctx.rng
    files = files_for(rng, 5)
    raw, said = hostile_manifest(rng, files, 5, gated=bool(world.gate))
    ctx.describe(f"daemon, fresh host, only revision 5: {said}")
    world.refused.add(5)
    for name, data in files.items():
        world.put(f"5/{name}", data)
    world.put(f"5/{MANIFEST}", raw)
    daemon = world.daemon(interval="1s")
    ctx.cleanups.append(daemon.terminate)
    if not daemon.wait_up():
        ctx.fail("daemon did not come up")
        return
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        status, _ = daemon.get("/readyz")
        if status == 200:
            ctx.fail(f"/readyz says ready with nothing verified active (active {world.active()})")
            break
        time.sleep(0.3)
    for path in ("/status", "/", "/metrics"):
        status, took = daemon.get(path, timeout=3)
        if status != 200 or took > 2:
            ctx.fail(
                f"GET {path} after the hostile revision: {status or 'no answer'} in {took:.1f} s"
            )
    _good(world, rng, 6)
    deadline = time.monotonic() + 8  # two passes at 1 s, plus the retry backoff
    while time.monotonic() < deadline and world.active() != 6:
        time.sleep(0.3)
    if world.active() != 6:
        ctx.fail(f"liveness: the daemon did not serve good revision 6 (active {world.active()})")
    ctx.check(world, "daemon")
    took, code = daemon.terminate()
    if code is None or took > 5:
        ctx.fail(f"SIGTERM: daemon {'killed' if code is None else 'exited'} after {took:.1f} s")
