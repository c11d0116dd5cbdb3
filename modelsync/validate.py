"""Checks of a staged revision before any server sees it.

In order: what the server preset requires of a revision (an MLServer settings file
that names the model, a Triton config for the right model), a smoke file that parses
(and is there when ``[models.smoke] required``), the user's own loader
(``validate.exec``), and the TensorFlow load check. Commands run in child processes
with a time limit; the daemon never imports TensorFlow. A failed check refuses the
revision for good; a check that runs out of time fails the pass (the machine may
be busy) and is tried again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.children import ChildTimedOut, run_child
from modelsync.config import ModelConfig
from modelsync.errors import Cancelled, ModelsyncError, RefusedError
from modelsync.reload import ReloadTarget, child_env
from modelsync.servers import get_preset
from modelsync.smoke import check_smoke

__all__ = ["validate_revision"]


def validate_revision(path: Path, model: ModelConfig, version: int, cancel: CancelToken) -> None:
    """Raise RefusedError if the staged revision at ``path`` must not be served."""
    get_preset(model.server).check_revision(model, version, path)
    check_smoke(path, model.smoke)
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
        done = run_child(argv, env, timeout, cancel)
    except Cancelled as exc:
        raise Cancelled(f"{exc} during {what}") from None
    except ChildTimedOut:
        raise ModelsyncError(f"{what} did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise ModelsyncError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        reason = done.last_words(400) or f"exit {done.returncode}"
        raise RefusedError(f"{what} failed (exit {done.returncode}): {reason}")
