"""docs/pipelines.md: its worked examples (relative gates at publish, release and on a
host; the Kubeflow Pipelines example pipeline) run as written, in order, in one empty
directory, and print what the page says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

PAGE = REPO / "docs" / "pipelines.md"
KFP_PYTHON = REPO / ".envs" / "kfp" / "bin" / "python"
# Paths in the page's configuration files that the test points at its directory.
PLACEHOLDER = "/tmp/replaced-by-the-test"


def _blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```$", text, flags=re.M | re.S)


def _steps(body: str) -> list[tuple[str, list[str]]]:
    """Each `$ command` of a console block with the lines it should print."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def _said(done: subprocess.CompletedProcess[str]) -> list[str]:
    """Standard output, modelsync's one-line errors, and a non-zero exit status."""
    lines = done.stdout.splitlines()
    lines += [line for line in done.stderr.splitlines() if line.startswith("modelsync: ")]
    if done.returncode != 0:
        lines.append(f"[exit {done.returncode}]")
    return [line for line in lines if line.strip()]


def _matches(expected: str, got: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, got) is not None


def test_the_worked_examples_run_as_written(tmp_path: Path) -> None:
    """Every command of the page prints what the page shows (kfp's with .envs/kfp)."""
    (tmp_path / "integrations").symlink_to(REPO / "integrations")
    (tmp_path / ".envs").symlink_to(REPO / ".envs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    ran = 0
    for language, body in _blocks(PAGE.read_text()):
        if language == "toml" and body.startswith("# file: "):
            name = body.splitlines()[0].removeprefix("# file: ")
            (tmp_path / name).write_text(body.replace(PLACEHOLDER, str(tmp_path)))
            continue
        if language != "console":
            continue
        for command, expected in _steps(body):
            if command.startswith(".envs/kfp/") and not KFP_PYTHON.exists():
                pytest.skip("kfp's environment is not built: run `make kfp`")
            done = subprocess.run(
                ["/bin/bash", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                text=True, timeout=600, check=False,
            )  # fmt: skip
            got = _said(done)
            assert len(got) == len(expected) and all(map(_matches, expected, got)), (
                f"$ {command}\nexpected: {expected}\ngot: {got}\n{done.stderr[-2000:]}"
            )
            ran += 1
    assert ran >= 15
