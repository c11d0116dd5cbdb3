"""Class 4: signed channel state (docs/fleet.md, "Signed pointers").

With signatures required, the pointer is a signed envelope carrying ``seq`` (only
grows) and ``expires``; hosts refuse unsigned pointers, bad signatures, a seq going
back, an expired pointer, and a stable moving back without a signed rollback mark.
``signed_pointer`` writes the documented format (World.envelope), independently of
modelsync's code.

Each trial establishes a signed pointer (stable 1, then 2), then presents one of:
an unsigned pointer, one signed by another key, one whose seq goes back, an expired
one, an old pointer replayed (stable moving back), or a newer pointer moving stable
back without the rollback mark. The host must stay where it is.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.variants.core import Ctx
from bench.variants.world import World, files_for

__all__ = ["ATTACKS", "signed_channels", "signed_pointer"]

ATTACKS = ("unsigned", "bad-signature", "seq-back", "expired", "replay", "same-seq-other-content")


def signed_pointer(
    world: World, doc: dict[str, Any], *, sign: bool = True, key: Any = None
) -> bytes:
    """Write ``doc`` as the pointer: a signed envelope (or the bare document)."""
    raw = world.envelope(doc, key) if sign else json.dumps(doc).encode()
    world.put(f"_channels/{world.channel}.json", raw)
    return raw


def signed_channels(ctx: Ctx) -> None:
    rng = ctx.rng
    attack = rng.choice(ATTACKS)
    world = ctx.world(channel="prod", signed=True)
    for version in (1, 2, 3):
        world.publish(version, files_for(rng, version))
    now = time.time()
    now = int(now)
    first = {"stable": 1, "seq": 10, "expires": now + 3600}
    signed_pointer(world, first)
    world.sync()
    baseline = world.active()
    signed_pointer(world, {"stable": 2, "seq": 11, "expires": now + 3600})
    run = world.sync()
    if world.active() != 2:
        ctx.fail(
            f"baseline: a signed pointer (seq, expires) to 2 is not followed "
            f"(active {world.active()}, after the first pointer {baseline}): {run.tail()}"
        )
    held = world.active()
    target = 3
    if attack == "unsigned":
        signed_pointer(world, {"stable": 3}, sign=False)
    elif attack == "bad-signature":
        stranger = Ed25519PrivateKey.generate()
        signed_pointer(world, {"stable": 3, "seq": 12, "expires": now + 3600}, key=stranger)
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
