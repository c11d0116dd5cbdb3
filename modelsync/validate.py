"""Checks of a staged revision before any server sees it.

In order: what the server preset requires of a revision (an MLServer settings file
that names the model, a Triton config for the right model), the user's own loader
(``validate.exec``), and the TensorFlow load check. Commands run in child processes
with a time limit; the daemon never imports TensorFlow. A failed check refuses the
revision for good; a check that runs out of time fails the pass (the machine may
be busy) and is tried again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import Cancelled, ModelsyncError, RefusedError
from modelsync.reload import ReloadTarget, child_env
from modelsync.servers import get_preset

__all__ = ["validate_revision"]


def validate_revision(path: Path, model: ModelConfig, version: int, cancel: CancelToken) -> None:
    """Raise RefusedError if the staged revision at ``path`` must not be served."""
    get_preset(model.server).check_revision(model, version, path)
    config = model.validate_
    if config.exec_:
        env = child_env(ReloadTarget(model.name, version, path).env())
        _run(config.exec_, env, config.timeout, cancel, f"validate.exec {config.exec_[0]}")
    if config.tensorflow:
        argv = [sys.executable, "-m", "modelsync.tfcheck", str(path)]
        for signature in config.signatures:
            argv += ["--signature", signature]
        if config.smoke_input:
            argv += ["--smoke-input", json.dumps(config.smoke_input)]
        env = child_env({"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
        _run(argv, env, config.timeout, cancel, "TensorFlow validation")


def _run(
    argv: Sequence[str], env: dict[str, str], timeout: float, cancel: CancelToken, what: str
) -> None:
    try:
        child = subprocess.Popen(
            list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
    except OSError as exc:
        raise ModelsyncError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from exc
    with child:
        try:
            _, err = _communicate(child, timeout, cancel, what)
        except BaseException:
            child.kill()
            child.wait()
            raise
    if child.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        reason = lines[-1][:400] if lines else f"exit {child.returncode}"
        raise RefusedError(f"{what} failed (exit {child.returncode}): {reason}")


def _communicate(
    child: subprocess.Popen[bytes], timeout: float, cancel: CancelToken, what: str
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
                raise Cancelled(f"stop requested during {what}") from None
            if waited >= timeout:
                raise ModelsyncError(f"{what} did not finish within {timeout:g}s") from None
