"""Class 4 (PENDING: the feature is being built): signed channel state.

DESIGN.md: "With signatures required, the pointer is signed and carries a sequence
number: hosts refuse unsigned pointers and pointers that go back (TUF-style rollback
and freeze protection)." The format is not settled; these trials assume the obvious
one, in one place (``signed_pointer``): the pointer carries ``seq`` (an integer that
only grows) and ``expires`` (Unix time), and ``_channels/<name>.json.sig`` is the
detached Ed25519 signature of the pointer's bytes, made by a key of
``verify.public_keys``. Adjust ``signed_pointer`` when the feature lands.

Each trial establishes a signed pointer (stable 1, then 2), then presents one of:
an unsigned pointer, one whose seq goes back, an expired one, an old pointer replayed
(stable moving back), or a pointer with the current seq but other content. The host
must stay where it is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.variants.core import Ctx
from bench.variants.world import World, files_for

__all__ = ["ATTACKS", "signed_channels", "signed_pointer"]

ATTACKS = ("unsigned", "bad-signature", "seq-back", "expired", "replay", "same-seq-other-content")


def signed_pointer(world: World, doc: dict[str, Any], *, sign: bool = True) -> bytes:
    """Write ``doc`` as the pointer, with its detached signature (or with none)."""
    raw = json.dumps(doc).encode()
    sig = f"_channels/{world.channel}.json.sig"
    if sign:
        world.put(sig, world.key.sign(raw))
    elif isinstance(getattr(world.backend, "root", None), Path):
        (world.backend.root / sig).unlink(missing_ok=True)  # type: ignore[attr-defined]
    else:
        world.put(sig, b"")  # the network backends' helpers cannot delete
    world.put(f"_channels/{world.channel}.json", raw)
    return raw


def signed_channels(ctx: Ctx) -> None:
    rng = ctx.rng
    attack = rng.choice(ATTACKS)
    world = ctx.world(channel="prod", signed=True)
    for version in (1, 2, 3):
        world.publish(version, files_for(rng, version))
    now = time.time()
    first = {"stable": 1, "seq": 10, "expires": now + 3600}
    signed_pointer(world, first)
    world.sync()
    baseline = world.active()
    signed_pointer(world, {"stable": 2, "seq": 11, "expires": now + 3600})
    run = world.sync()
    if world.active() != 2:
        ctx.fail(
            f"baseline: a signed pointer (seq, expires, .sig) to 2 is not followed "
            f"(active {world.active()}, after the first pointer {baseline}): {run.tail()}"
        )
    held = world.active()
    target = 3
    if attack == "unsigned":
        signed_pointer(world, {"stable": 3}, sign=False)
    elif attack == "bad-signature":
        raw = json.dumps({"stable": 3, "seq": 12, "expires": now + 3600}).encode()
        world.put("_channels/prod.json.sig", world.key.sign(raw + b" "))
        world.put("_channels/prod.json", raw)
    elif attack == "seq-back":
        signed_pointer(world, {"stable": 3, "seq": rng.choice([1, 9, 10]), "expires": now + 3600})
    elif attack == "expired":
        signed_pointer(world, {"stable": 3, "seq": 12, "expires": now - rng.choice([1, 60, 86400])})
    elif attack == "replay":
        signed_pointer(world, first)
        target = 1
    else:
        signed_pointer(world, {"stable": 1, "seq": 11, "expires": now + 3600})
        target = 1
    ctx.describe(f"{attack}: pointer to {target} while serving {held}")
    run = world.sync()
    ctx.judge_run(run)
    if world.active() == target and held != target:
        ctx.fail(f"{attack}: the host moved to {target} (from {held})")
    ctx.check(world, attack)
