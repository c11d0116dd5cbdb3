"""A fleet of 10,000 sidecars in virtual time: promote, canary, halt; bucket requests counted.

The decisions are modelsync's own code: each simulated sidecar has a real
``modelsync.sync.policy.follow.Follower`` (pointer read with its tag, report tally with its
cache, ``channel.target_of``) reading an in-memory bucket that implements the
control-object calls of a Source and counts every request by virtual second. What is
simulated: the clock, the schedule (interval x (1 +/- jitter), as the daemon draws
it), and an activation (download, load, confirm) taking ACTIVATE_S, after which the
host's server either confirms or rejects the version and the host reports.

    python -m bench.fleet_sim [--hosts 10000] [--interval 600] [--seed 1]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import structlog

from modelsync.cancel import CancelToken
from modelsync.channel import Canary, Pointer, channel_key, in_cohort
from modelsync.reports import Outcome, write_report
from modelsync.retry import RetryPolicy
from modelsync.sources.control import UNCHANGED, Control, Unchanged
from modelsync.sync.policy.follow import Follower

MODEL, CHANNEL = "ranker", "prod"
FILES = 5  # objects fetched per activation besides the manifest
ACTIVATE_S = 60.0  # download + load + confirm of a new revision
REVERT_S = 10.0  # back to a retained revision: no download


class MemoryBucket:
    """The control-object part of a Source, in memory, counting requests."""

    url = "mem://bucket/ranker"

    def __init__(self) -> None:
        self.now = 0.0
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.per_second: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self._generation = itertools.count(1)

    def count(self, kind: str, n: int = 1) -> None:
        self.per_second[int(self.now)] += n
        self.kinds[kind] += n

    def get_control(
        self, key: str, limit: int, tag: str | None = None, cancel: CancelToken | None = None
    ) -> Control | Unchanged | None:
        self.count("get")
        found = self.objects.get(key)
        if found is None:
            return None
        return UNCHANGED if found[1] == tag else Control(*found)

    def put_control(self, key: str, data: bytes, *, match: str | None = None) -> str:
        self.count("put")
        tag = str(next(self._generation))
        self.objects[key] = (data, tag)
        return tag

    def list_control(self, prefix: str, cancel: CancelToken | None = None) -> dict[str, str]:
        found = {k: v[1] for k, v in self.objects.items() if k.startswith(prefix)}
        self.count("list", max(1, -(-len(found) // 1000)))  # pages of 1,000
        return found

    def close(self) -> None:
        return None


@dataclass
class Host:
    identity: str
    follower: Follower
    active: int
    refused: set[int] = field(default_factory=set)
    halt_seen: float | None = None


class Fleet:
    def __init__(self, hosts: int, interval: float, jitter: float, seed: int) -> None:
        self.bucket = MemoryBucket()
        self.interval, self.jitter = interval, jitter
        self.rng = random.Random(seed)
        retry = RetryPolicy(attempts=1)
        self.hosts = [
            Host(f"pod-{i:05d}", Follower(f"pod-{i:05d}", retry), active=1) for i in range(hosts)
        ]
        self.bad: dict[int, set[str]] = {}  # version -> hosts whose server rejects it
        self.events: list[tuple[float, int, str, int, int]] = []
        self._seq = itertools.count()
        self.log = structlog.get_logger()
        self.cancel = CancelToken()
        self.activations: list[tuple[float, str, int]] = []  # (time, host, version)
        self.failures: list[float] = []
        for index in range(hosts):  # a fleet in steady state: phases spread over an interval
            self._at(self.rng.uniform(0, interval), "poll", index)

    def _at(self, when: float, kind: str, index: int, version: int = 0) -> None:
        heapq.heappush(self.events, (when, next(self._seq), kind, index, version))

    def set_pointer(self, pointer: Pointer) -> None:
        self.bucket.put_control(channel_key(CHANNEL), pointer.to_bytes())

    def run_until(self, end: float) -> None:
        while self.events and self.events[0][0] <= end:
            when, _, kind, index, version = heapq.heappop(self.events)
            self.bucket.now = when
            host = self.hosts[index]
            if kind == "poll":
                self._poll(when, index, host)
            else:
                self._done(when, index, host, version)
        self.bucket.now = end

    def _next_poll(self, when: float, index: int) -> None:
        gap = self.interval * (1 + self.rng.uniform(-self.jitter, self.jitter))
        self._at(when + gap, "poll", index)

    def _poll(self, when: float, index: int, host: Host) -> None:
        view = host.follower.view(
            MODEL,
            CHANNEL,
            self.bucket,
            host.active,
            self.cancel,
            self.log,
        )
        if view.target.halted and host.halt_seen is None:
            host.halt_seen = when
        target = view.target.version
        if target is None or target == host.active or target in host.refused:
            self._next_poll(when, index)
            return
        reverting = target < host.active
        if not reverting:
            self.bucket.count("download", 1 + FILES)
        self._at(when + (REVERT_S if reverting else ACTIVATE_S), "done", index, target)

    def _done(self, when: float, index: int, host: Host, version: int) -> None:
        if host.identity in self.bad.get(version, ()):
            host.refused.add(version)
            self.failures.append(when)
            outcome: Outcome = "rolled_back"
        else:
            host.active = version
            self.activations.append((when, host.identity, version))
            outcome = "confirmed"
        write_report(
            self.bucket,
            MODEL,
            version,
            host.identity,
            outcome,
            "simulated server rejected it" if outcome == "rolled_back" else "",
            wall=lambda: when,
        )
        self._next_poll(when, index)

    def serving(self, version: int) -> int:
        return sum(1 for h in self.hosts if h.active == version)

    def requests(self, start: float, end: float) -> tuple[float, int]:
        seconds = range(int(start), int(end))
        counts = [self.bucket.per_second.get(s, 0) for s in seconds]
        return (sum(counts) / max(1, len(counts)), max(counts, default=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=600.0)
    parser.add_argument("--jitter", type=float, default=0.1)
    parser.add_argument("--canary-percent", type=float, default=5.0)
    parser.add_argument(
        "--bad-share", type=float, default=0.01, help="share of the cohort that rejects v3"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    started = time.monotonic()
    fleet = Fleet(args.hosts, args.interval, args.jitter, args.seed)
    interval = args.interval
    fleet.set_pointer(Pointer(stable=1))
    fleet.run_until(2 * interval)
    idle = fleet.requests(interval, 2 * interval)

    # Promote 2: how long until every host serves it.
    promoted_at = 2 * interval
    fleet.set_pointer(Pointer(stable=2))
    fleet.run_until(promoted_at + 3 * interval)
    assert fleet.serving(2) == args.hosts, fleet.serving(2)
    converged = max(t for t, _, v in fleet.activations if v == 2) - promoted_at
    promote_load = fleet.requests(promoted_at, promoted_at + converged)

    # Canary 3, rejected by the servers of a random share of hosts.
    canary = Canary(version=3, percent=args.canary_percent)
    cohort = [h.identity for h in fleet.hosts if in_cohort(MODEL, canary, h.identity)]
    bad = {h for h in cohort if fleet.rng.random() < args.bad_share}
    fleet.bad[3] = bad or {fleet.rng.choice(cohort)}  # at least one, or nothing to halt
    canary_at = fleet.bucket.now
    fleet.set_pointer(Pointer(stable=2, canary=canary))
    fleet.run_until(canary_at + 4 * interval)
    first_failure = min(fleet.failures)
    halt_seen = [h.halt_seen for h in fleet.hosts]
    assert all(t is not None for t in halt_seen), "a host never saw the halt"
    everyone = max(t for t in halt_seen if t is not None) - first_failure
    adopted = {(h, v) for _, h, v in fleet.activations if v == 3}
    reverted = fleet.serving(3) == 0
    canary_load = fleet.requests(canary_at, canary_at + 3 * interval)
    elapsed = time.monotonic() - started

    print(f"{args.hosts:,} sidecars, interval {interval:g} s +/- {args.jitter:.0%}, one model")
    print()
    print("| phase | figure | value |")
    print("|---|---|---:|")
    print(f"| idle | bucket requests/s, mean / peak | {idle[0]:.1f} / {idle[1]} |")
    print(f"| promote 2 | every host serving it after | {converged:.0f} s |")
    mean, peak = promote_load
    print(f"| promote 2 | bucket requests/s, mean / peak | {mean:.1f} / {peak} |")
    print(
        f"| canary 3 at {args.canary_percent:g} % | cohort / servers rejecting it / adopted "
        f"before the halt | {len(cohort)} / {len(fleet.bad[3])} / {len(adopted)} |"
    )
    print(
        f"| canary 3 | first rejection after the canary started | "
        f"{first_failure - canary_at:.0f} s |"
    )
    print(f"| canary 3 | every host saw the halt, after the first rejection | {everyone:.0f} s |")
    print(f"| canary 3 | no host serving 3 at the end | {'yes' if reverted else 'NO'} |")
    print(
        f"| canary 3 | bucket requests/s, mean / peak | {canary_load[0]:.1f} / {canary_load[1]} |"
    )
    print()
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(fleet.bucket.kinds.items()))
    print(f"requests by kind over {fleet.bucket.now / 3600:.1f} virtual hours: {kinds}")
    print(f"simulated in {elapsed:.1f} s of wall time")


if __name__ == "__main__":
    main()
