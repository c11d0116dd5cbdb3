"""Class 7: blockers. Revisions published above a good one, each of which its
publisher made impossible to bring in, by a fault drawn at random from the faults a
bucket writer decides (red-team round 4: each of these ended every pass before, so
nothing older stood in and nothing newer was ever reached):

- ``missing``: the manifest names an object that was never uploaded;
- ``no-space``: the manifest declares a file larger than the store's free space (but
  not than its volume);
- ``long-path``: a path whose bytes, joined under the staging directory, pass PATH_MAX;
- ``wrong-bytes``: an object whose bytes are not the ones the manifest names;
- ``garbage``: a manifest that is not JSON;
- ``encoded`` (s3): an object stored with ``Content-Encoding: gzip``.

Judged, on a host with nothing served yet: the first `sync` serves the good revision
below them (a stand-in), every `sync` ends by itself without a traceback, nothing
hostile is ever served (the oracle), a revision published above the blockers is served
by the next `sync`, and the state file stays under the limit the process enforces.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from typing import Any

from bench.variants.core import Ctx
from bench.variants.world import MANIFEST, World, files_for, manifest_for

__all__ = ["FAULTS", "blockers"]

FAULTS = ("missing", "no-space", "long-path", "wrong-bytes", "garbage", "encoded")
# state.STATE_LIMIT (the campaign imports nothing of modelsync's).
_STATE_LIMIT = 4 << 20


def blockers(ctx: Ctx) -> None:
    rng = ctx.rng
    faults = FAULTS if ctx.trial.backend == "s3" else FAULTS[:-1]
    world = ctx.world()
    good = rng.randint(2, 50)
    world.publish(good, files_for(rng, good))
    count = rng.randint(1, 6)
    drawn = [rng.choice(faults) for _ in range(count)]
    above = sorted(rng.sample(range(good + 1, good + 400), count))
    for version, fault in zip(above, drawn, strict=True):
        _publish_blocker(world, version, fault, rng.randbytes(rng.randint(1, 500)))
        if fault in ("long-path", "wrong-bytes", "garbage"):
            world.refused.add(version)  # refused for good is right for these
    said = ", ".join(f"{v}:{f}" for v, f in zip(above, drawn, strict=True))
    ctx.describe(f"good {good}; above it {said}")
    first = world.sync()
    ctx.judge_run(first)
    ctx.check(world, "the first pass")
    if world.active() != good:
        ctx.fail(f"revision {good} did not stand in: active {world.active()}; {first.tail()}")
        return
    again = world.sync()
    ctx.judge_run(again)
    ctx.check(world, "a second pass")
    newest = above[-1] + rng.randint(1, 5)
    world.publish(newest, files_for(rng, newest))
    last = world.sync()
    ctx.judge_run(last)
    ctx.check(world, "after a good revision above them")
    if world.active() != newest:
        ctx.fail(f"revision {newest} above the blockers not served: {last.tail()}")
    state = world.state / "state" / "ranker.json"
    if state.exists() and state.stat().st_size >= _STATE_LIMIT:
        ctx.fail(f"state file {state.stat().st_size} bytes, over the limit")


def _publish_blocker(world: World, version: int, fault: str, data: bytes) -> None:
    files = {"saved_model.pb": data, "variables/shard-0": data[::-1]}
    doc: dict[str, Any] = manifest_for(files, version)
    if fault == "garbage":
        world.put(f"{version}/{MANIFEST}", b"{" + data[:50].hex().encode())
        return
    if fault == "missing":
        absent = hashlib.sha256(b"absent!").hexdigest()
        doc["files"].append({"path": "variables/absent", "size": 7, "sha256": absent})
    elif fault == "no-space":
        disk = os.statvfs(world.store)
        free, total = disk.f_bavail * disk.f_frsize, disk.f_blocks * disk.f_frsize
        doc["files"][0]["size"] = (free + total) // 2
    elif fault == "long-path":
        deep = "/".join(["d" * 250] * 17) + "/f"  # 4,270 bytes: past PATH_MAX staged
        files[deep] = data
        doc = manifest_for(files, version)
    elif fault == "wrong-bytes":
        files = {**files, "saved_model.pb": data + b"!"}
    if fault == "encoded":
        client = world.backend._client()  # type: ignore[attr-defined]
        key = f"{world.backend.prefix}/{version}/saved_model.pb"  # type: ignore[attr-defined]
        client.put_object(
            Bucket=world.backend.bucket,  # type: ignore[attr-defined]
            Key=key,
            Body=gzip.compress(data),
            ContentEncoding="gzip",
        )
        files = {k: v for k, v in files.items() if k != "saved_model.pb"}
    for name, body in files.items():
        if fault == "long-path" and len(name) > 1000:
            continue  # a name the store may not even hold: the manifest alone names it
        world.put(f"{version}/{name}", body)
    world.put(f"{version}/{MANIFEST}", json.dumps(doc).encode())
