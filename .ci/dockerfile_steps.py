"""Run the Dockerfile's install steps without a Docker engine (none runs in CI).

Reads the RUN instructions of the `build` and `build-tensorflow` stages, runs them
with the image paths mapped into a scratch directory (/src -> a copy of what the
.dockerignore lets in, /opt/modelsync -> scratch/opt/modelsync), then checks that
the slim environment has no TensorFlow and the full one has it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def stages(dockerfile: str) -> dict[str, list[str]]:
    """RUN commands by stage name, with line continuations joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)
    found: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            current = words[3] if len(words) >= 4 and words[2].upper() == "AS" else words[1]
            found[current] = []
        elif words[0] == "RUN":
            found[current].append(line.split(None, 1)[1])
    return found


def main() -> int:
    runs = stages((REPO / "Dockerfile").read_text())
    scratch = Path(tempfile.mkdtemp(prefix="modelsync-docker-steps-"))
    try:
        src = scratch / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(REPO / name, src / name)
        shutil.copytree(
            REPO / "modelsync", src / "modelsync", ignore=shutil.ignore_patterns("__pycache__")
        )
        opt = scratch / "opt" / "modelsync"
        for stage in ("build", "build-tensorflow"):
            for command in runs[stage]:
                command = command.replace("/opt/modelsync", str(opt))
                print(f"[{stage}] $ {command}", flush=True)
                argv = ["/bin/bash", "-euo", "pipefail", "-c", command]
                subprocess.run(argv, cwd=src, check=True)
            if stage == "build":
                probe = subprocess.run(
                    [
                        str(opt / "bin" / "python"),
                        "-c",
                        "import importlib.util as u; print(u.find_spec('tensorflow') is None)",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                assert probe.stdout.strip() == "True", "the slim stage must not have TensorFlow"
        out = subprocess.run(
            [str(opt / "bin" / "modelsync"), "--version"],
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"ok: {out.stdout.strip()}, slim without TensorFlow, full stage imports it")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
