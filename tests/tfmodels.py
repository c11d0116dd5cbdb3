"""Tiny SavedModels for the tests, built once per session in a child process."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO


def build_models(root: Path, weights: dict[str, float]) -> dict[str, Path]:
    """{name: weight} -> {name: SavedModel dir}; one TensorFlow import for all."""
    specs = [f"{root / name}:{weight}" for name, weight in weights.items()]
    subprocess.run(
        [sys.executable, "-m", "examples.tfserver.make_model", *specs],
        cwd=REPO,
        check=True,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return {name: root / name for name in weights}


def corrupt_copy(model: Path, dest: Path) -> Path:
    """A copy whose variables are random bytes of the same size: TensorFlow cannot load it."""
    shutil.copytree(model, dest)
    data = dest / "variables" / "variables.data-00000-of-00001"
    data.write_bytes(random.Random(7).randbytes(data.stat().st_size))
    return dest
