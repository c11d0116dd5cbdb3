"""Class 3: deadlines. A proxy drips answers (1 byte every 1-2 s) or never answers,
in front of a storage API (the listing, the manifest, an object, the channel pointer)
or as the confirm endpoint; or a state file or a bucket's manifest is a link to
/dev/zero or a FIFO. The pass (CLI) must end within pass_timeout + slack with the
store intact; a daemon stuck in such a pass must end within 5 s of SIGTERM.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from bench.variants.core import Ctx
from bench.variants.world import MANIFEST, World, files_for
from tests.dripproxy import MODES, DripProxy, Stall

__all__ = ["SLACK", "deadlines"]

# Interpreter start-up, imports and the cleanup after the deadline.
SLACK = 4.0
NETWORK_STAGES = ("listing", "manifest", "object", "channel")
FILE_STAGES = ("confirm", "state", "manifest")


def _match(world: World, stage: str) -> Callable[[str, str], bool]:
    backend = world.backend
    marks = {
        "listing": getattr(backend, "listing_mark", "delimiter"),
        "manifest": backend.in_path(f"2/{MANIFEST}"),  # type: ignore[attr-defined]
        "object": backend.in_path("2/saved_model.pb"),  # type: ignore[attr-defined]
        "channel": backend.in_path("_channels/prod.json"),  # type: ignore[attr-defined]
    }
    mark = marks[stage]
    return lambda _method, path: mark in path


def deadlines(ctx: Ctx) -> None:
    rng = ctx.rng
    network = ctx.trial.backend != "file"
    stage = rng.choice(NETWORK_STAGES if network else FILE_STAGES)
    mode = rng.choice(MODES)
    timeout = rng.choice([3.0, 4.0, 5.0])
    use_daemon = rng.random() < 0.3
    proxy: DripProxy | None = None
    kwargs: dict[str, object] = {
        "pass_timeout": timeout,
        "channel": "prod" if stage == "channel" else None,
    }
    if network:
        probe = ctx.world()  # only to learn the backend's port
        proxy = DripProxy(probe.backend.port).start()  # type: ignore[attr-defined]
        kwargs["source_endpoint"] = proxy.url
    elif stage == "confirm":
        proxy = DripProxy(None).start()
        proxy.answer = b'{"version": 1}'
        kwargs["confirm"] = {
            "method": "http",
            "url": f"{proxy.url}/v1/models/ranker",
            "json_field": "version",
            "timeout": "120s",
            "period": "0.2s",
        }
    if proxy is not None:
        ctx.cleanups.append(proxy.stop)
    world = ctx.world(**kwargs)
    world.publish(1, files_for(rng, 1))
    if world.channel:
        world.pointer({"stable": 1})
    world.sync()
    if world.active() != 1:
        ctx.fail(f"setup: revision 1 not served (active {world.active()})")
        return
    before = world.digest(1)
    world.publish(2, files_for(rng, 2))
    if world.channel:
        world.pointer({"stable": 2})
    what = f"{stage} {mode}" if proxy is not None else stage
    if proxy is not None:
        match = (lambda _m, _p: True) if stage == "confirm" else _match(world, stage)
        proxy.stall = Stall(mode, match, seed=rng.randrange(2**31))
        proxy.answer = b'{"version": 2}'
    else:
        target = rng.choice(["/dev/zero", "fifo"])
        path = world.state_file if stage == "state" else world.backend.root / "2" / MANIFEST  # type: ignore[attr-defined]
        path.unlink()
        if target == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to(target)
        what = f"{stage} file replaced by {target}"
    ctx.describe(
        f"{what}; pass_timeout {timeout:g} s; {'daemon + SIGTERM' if use_daemon else 'sync'}"
    )
    if use_daemon:
        _sigterm(ctx, world, proxy)
    else:
        run = world.sync(timeout=timeout + 60)
        if run.seconds > timeout + SLACK and not run.hung:
            ctx.fail(
                f"the pass took {run.seconds:.1f} s (pass_timeout {timeout:g} s + {SLACK:g} s)"
            )
        ctx.judge_run(run)  # hung: killed at pass_timeout + 60 s
    if proxy is not None and not proxy.stalled:
        ctx.fail(f"harness: nothing was stalled (requests seen: {proxy.seen[-3:]})")
    ctx.check(world, what)
    if world.active() != 1 or world.digest(1) != before:
        ctx.fail(f"store not intact: active {world.active()} (was 1)")


def _sigterm(ctx: Ctx, world: World, proxy: DripProxy | None) -> None:
    daemon = world.daemon(interval="1h")
    ctx.cleanups.append(daemon.terminate)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proxy is None and daemon.get("/healthz", 1)[0]:
            time.sleep(1.0)
            break
        if proxy is not None and proxy.stalled:
            time.sleep(0.5)
            break
        time.sleep(0.1)
    took, code = daemon.terminate()
    if code is None:
        ctx.fail(f"SIGTERM: the daemon was still running {took:.1f} s later (killed)")
    elif took > 5 or code != 0:
        ctx.fail(f"SIGTERM: exit {code} after {took:.1f} s")
