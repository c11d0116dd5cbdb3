"""Validation of a staged revision before activation: the TensorFlow load check.

TensorFlow runs in a child process (modelsync.tfcheck) with a time limit; the
daemon never imports it. A failed check refuses the revision for good; a check
that runs out of time fails the pass (the machine may be busy) and is tried again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.config import ValidateConfig
from modelsync.errors import Cancelled, ModelsyncError, RefusedError

__all__ = ["validate_revision"]


def validate_revision(path: Path, config: ValidateConfig, cancel: CancelToken) -> None:
    """Raise RefusedError if TensorFlow cannot load ``path`` as configured."""
    if not config.tensorflow:
        return
    argv = [sys.executable, "-m", "modelsync.tfcheck", str(path)]
    for signature in config.signatures:
        argv += ["--signature", signature]
    if config.smoke_input:
        argv += ["--smoke-input", json.dumps(config.smoke_input)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    with subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    ) as child:
        try:
            _, err = _communicate(child, config.timeout, cancel)
        except BaseException:
            child.kill()
            child.wait()
            raise
    if child.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit {child.returncode}"
        raise RefusedError(f"{path}: TensorFlow validation failed: {reason}")


def _communicate(
    child: subprocess.Popen[bytes], timeout: float, cancel: CancelToken
) -> tuple[bytes, bytes]:
    """Wait for the child in short slices so a stop request is honoured at once."""
    waited = 0.0
    while True:
        try:
            out, err = child.communicate(timeout=0.5)
            return out or b"", err or b""
        except subprocess.TimeoutExpired:
            waited += 0.5
            if cancel.cancelled():
                raise Cancelled("stop requested during validation") from None
            if waited >= timeout:
                raise ModelsyncError(
                    f"TensorFlow validation did not finish within {timeout:g}s"
                ) from None
