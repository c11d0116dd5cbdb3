"""Trials, their seeds and reproductions, and the record of what broke."""

from __future__ import annotations

import random
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.variants.world import Endpoints, Run, World

__all__ = ["Ctx", "Generator", "Result", "Trial"]


@dataclass
class Trial:
    cls: str
    backend: str
    seed: int
    input: str = ""

    def repro(self) -> str:
        return (
            f"python -m bench.variants --class {self.cls} --backend {self.backend} "
            f"--trial-seed {self.seed}   # {self.input}"
        )


@dataclass
class Result:
    trial: Trial
    problems: list[str]
    seconds: float
    pending: bool  # a class whose feature has not landed (reported, not enforced)


class Ctx:
    """What a generator gets: its seeded rng, a world factory, and where to complain."""

    def __init__(self, trial: Trial, work: Path, endpoints: Endpoints) -> None:
        self.trial = trial
        self.rng = random.Random(trial.seed)
        self.work = work
        self.endpoints = endpoints
        self.problems: list[str] = []
        self.worlds: list[World] = []
        self.cleanups: list[Callable[[], Any]] = []

    def describe(self, text: str) -> None:
        self.trial.input = text[:400]

    def fail(self, what: str) -> None:
        self.problems.append(what[:600])

    def judge_run(self, run: Run) -> None:
        """A command must end (by itself), exit 0 or 1, and never with a traceback."""
        said = f"{' '.join(run.args)}: exit {run.returncode} after {run.seconds:.1f} s"
        if run.hung:
            self.fail(f"{said}: hung, killed by the harness")
        elif "Traceback" in run.stderr:
            raised = re.findall(r"(?:^|\\n|\n)(\w+(?:Error|Exception|Exit)\b[^\n\\]*)", run.stderr)
            self.fail(f"{said}: traceback: {raised[-1] if raised else run.tail()}")
        elif run.returncode not in (0, 1):
            self.fail(f"{said}: {run.tail()}")

    def world(self, **kwargs: Any) -> World:
        world = World(
            self.work / f"w{self.trial.seed}-{len(self.worlds)}",
            self.trial.backend,
            self.endpoints,
            **kwargs,
        )
        self.worlds.append(world)
        return world

    def check(self, world: World, where: str) -> None:
        for problem in world.check():
            self.fail(f"{where}: served tree: {problem}")

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # a cleanup must not hide the trial's own result
                print(f"cleanup failed: {exc!r}", file=sys.stderr)
        for world in self.worlds:
            shutil.rmtree(world.root, ignore_errors=True)


Generator = Callable[[Ctx], None]


@dataclass
class Record:
    results: list[Result] = field(default_factory=list)

    def run(
        self, trial: Trial, generator: Generator, work: Path, endpoints: Endpoints, pending: bool
    ) -> Result:
        ctx = Ctx(trial, work, endpoints)
        started = time.monotonic()
        try:
            generator(ctx)
        except Exception:
            ctx.fail("harness error: " + traceback.format_exc(limit=3).replace("\n", " | "))
        finally:
            ctx.close()
        result = Result(trial, ctx.problems, time.monotonic() - started, pending)
        self.results.append(result)
        mark = "ok" if not ctx.problems else ("PENDING" if pending else "FAIL")
        print(
            f"[{mark:7}] {trial.cls:9} {trial.backend:4} seed {trial.seed:<10} "
            f"{result.seconds:5.1f}s  {trial.input[:110]}",
            flush=True,
        )
        for problem in ctx.problems:
            print(f"          - {problem}", flush=True)
        if ctx.problems:
            print(f"          repro: {trial.repro()}", flush=True)
        return result
