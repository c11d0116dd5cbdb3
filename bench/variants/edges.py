"""Class 5: reports, links and the admin port.

- a ``_reports`` entry on file:// that is a symlink to a directory outside the bucket:
  writing this host's report must not write there;
- failure markers planted before a canary started, or for another version: the canary
  (at 100 %) must still be served;
- a symlinked ``.part`` (or finished file) in ``<state_dir>/partial/<model>/``: nothing
  outside is written, nothing linked is served;
- 40 slowloris clients on the admin port: /healthz and /readyz still answer in time,
  and SIGTERM still ends the daemon within 5 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time

from bench.variants.core import Ctx
from bench.variants.world import World, files_for, tree_digest

__all__ = ["KINDS", "edges"]

KINDS = ("report-link", "stale-markers", "partial-link", "slowloris")


def edges(ctx: Ctx) -> None:
    rng = ctx.rng
    kinds = KINDS if ctx.trial.backend == "file" else ("stale-markers", "partial-link")
    kind = rng.choice(kinds)
    {"report-link": _report_link, "stale-markers": _stale_markers,
     "partial-link": _partial_link, "slowloris": _slowloris}[kind](ctx)  # fmt: skip


def _outside(ctx: Ctx, world: World) -> tuple[str, str]:
    outside = world.root / "outside"
    outside.mkdir()
    (outside / "keep").write_text("not modelsync's")
    return str(outside), tree_digest(outside)


def _report_link(ctx: Ctx) -> None:
    rng = ctx.rng
    world = ctx.world(report=True)
    outside, before = _outside(ctx, world)
    bucket = world.backend.root  # type: ignore[attr-defined]
    world.publish(1, files_for(rng, 1))
    where = rng.choice(["_reports", "_reports/1", "_reports/1/failed"])
    link = bucket / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    if where.endswith("failed"):
        world.publish(1, files_for(rng, 1), raw=b"{broken")  # a refusal writes the marker
        world.refused.add(1)
    ctx.describe(f"bucket {where} -> {outside}")
    run = world.sync()
    ctx.judge_run(run)
    after = tree_digest(world.root / "outside")
    if after != before:
        written = sorted(p.name for p in (world.root / "outside").rglob("*"))
        ctx.fail(f"a report was written through {where} outside the bucket: {written}")
    ctx.check(world, "report link")


def _stale_markers(ctx: Ctx) -> None:
    rng = ctx.rng
    world = ctx.world(channel="prod", report=True)
    world.publish(1, files_for(rng, 1))
    world.publish(2, files_for(rng, 2))
    world.pointer({"stable": 1})
    world.sync()
    how = rng.choice(["before-start", "other-version", "other-model"])
    marked = 3 if how == "other-version" else 2
    host = rng.choice(["host-b", "pod-7", "old-host"])
    report = {
        "identity": host,
        "model": "sandbox" if how == "other-model" else "ranker",
        "version": marked,
        "outcome": "rolled_back",
        "reason": "planted",
        "at": time.time() - 86400,
    }
    body = json.dumps(report).encode()
    world.put(f"_reports/{marked}/{host}.json", body)
    world.put(f"_reports/{marked}/failed/{host}.json", body)
    if how == "other-version":
        world.publish(3, files_for(rng, 3))
    ctx.describe(f"failure marker for version {marked} ({how}) planted, then canary 2 at 100 %")
    start = world.cli("release", "start", "ranker", "2", "--percent", "100")
    if start.returncode != 0:
        ctx.fail(f"release start exit {start.returncode}: {start.tail()}")
        return
    for _ in range(2):
        world.sync()
    if world.active() != 2:
        ctx.fail(
            f"{how}: a failure marker planted before canary 2 started halted it: "
            f"host in the 100 % cohort serves {world.active()}, not 2"
        )
    ctx.check(world, "stale markers")


def _partial_link(ctx: Ctx) -> None:
    rng = ctx.rng
    world = ctx.world()
    outside, before = _outside(ctx, world)
    world.publish(1, files_for(rng, 1))
    world.sync()
    files = files_for(rng, 2)
    name, data = max(files.items(), key=lambda item: len(item[1]))
    sha = hashlib.sha256(data).hexdigest()
    partial = world.state / "partial" / "ranker"
    partial.mkdir(parents=True, exist_ok=True)
    how = rng.choice(["part-to-file", "part-to-dir", "done-same-bytes", "done-other-bytes"])
    victim = world.root / "outside" / "keep"
    if how == "part-to-file":
        (partial / f"{sha}.part").symlink_to(victim)
    elif how == "part-to-dir":
        (partial / f"{sha}.part").symlink_to(outside)
    else:
        decoy = world.root / "outside" / "decoy"
        decoy.write_bytes(data if how == "done-same-bytes" else b"x" + data)
        (partial / sha).symlink_to(decoy)
    before = tree_digest(world.root / "outside")
    world.publish(2, files)
    ctx.describe(f"{how}: <state>/partial/ranker/{sha[:12]}… ({name}) is a link outside")
    run = world.sync()
    ctx.judge_run(run)
    if tree_digest(world.root / "outside") != before:
        ctx.fail(f"{how}: a file outside the state directory was written through the link")
    ctx.check(world, "partial link")
    if world.active() != 2:
        ctx.fail(f"{how}: liveness: revision 2 not served (active {world.active()}): {run.tail()}")


def _slowloris(ctx: Ctx) -> None:
    rng = ctx.rng
    world = ctx.world()
    world.publish(1, files_for(rng, 1))
    daemon = world.daemon(interval="2s")
    ctx.cleanups.append(daemon.terminate)
    count = 40
    ctx.describe(f"{count} slowloris clients on the admin port, then /healthz and /readyz")
    if not daemon.wait_up():
        ctx.fail("daemon did not come up")
        return
    socks = daemon.slowloris(count)
    # Each client trickles one byte every 0.5-2 s (inside any idle timeout, never done)
    # and, as a real slowloris does, connects again when the server drops it.
    every = rng.uniform(0.5, 2.0)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(every):
            for index, sock in enumerate(socks):
                try:
                    sock.send(b"X")
                except OSError:
                    sock.close()
                    with contextlib.suppress(OSError):
                        socks[index] = daemon.slowloris(1)[0]
        for sock in socks:
            sock.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    ctx.cleanups.append(stop.set)
    ctx.describe(f"{ctx.trial.input}; a byte every {every:.1f} s")
    slow: list[str] = []
    end = time.monotonic() + 8
    while time.monotonic() < end:
        for path in ("/healthz", "/readyz"):
            status, took = daemon.get(path, timeout=3)
            if status == 0 or took > 2:
                slow.append(f"{path}: {status or 'no answer'} after {took:.1f} s")
        time.sleep(0.5)
    stop.set()
    if slow:
        ctx.fail(f"admin port starved by {count} slow clients: {slow[:3]} ({len(slow)} probes)")
    took, code = daemon.terminate()
    if code is None or took > 5:
        how = "killed" if code is None else f"exit {code}"
        ctx.fail(f"SIGTERM with {count} slow clients: {how} after {took:.1f} s")
    ctx.check(world, "slowloris")
