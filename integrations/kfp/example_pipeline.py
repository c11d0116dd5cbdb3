"""An example pipeline: train a model, then let modelsync gate, publish and release it.

``train`` stands for your training and evaluation steps: it writes a model directory
and returns its evaluation metrics. ``modelsync_step`` (modelsync_step.py) judges them
against the channel's stable revision and the baseline, and publishes and canaries the
model only if every rule holds.

Compile it for a Kubeflow cluster::

    python integrations/kfp/example_pipeline.py --compile pipeline.yaml

or run it here, each step a local subprocess (kfp's SubprocessRunner; needs modelsync
importable, e.g. `make kfp` and .envs/kfp/bin/python)::

    python integrations/kfp/example_pipeline.py --source s3://bucket/models/ranker \\
        --channel prod --quality 0.43 --gate 'ndcg@10 >= production - 0.005'

It prints the step's outputs as JSON: {"version": ..., "decision": ..., "reason": ...}.
"""

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from modelsync_step import modelsync_step


@dsl.component(base_image="python:3.11-slim")
def train(quality: float, model: dsl.Output[dsl.Model]) -> dict:
    """A stand-in for training and evaluation: a model directory and its metrics."""
    from pathlib import Path

    root = Path(model.path)
    (root / "variables").mkdir(parents=True, exist_ok=True)
    (root / "saved_model.pb").write_bytes(b"graph of a model of quality %f" % quality)
    (root / "variables" / "variables.data").write_bytes(b"weights" * 64)
    return {"ndcg@10": quality}


@dsl.pipeline(name="train-and-release")
def train_and_release(
    quality: float,
    source: str,
    channel: str,
    gates: list,
    baseline: int = 0,
    percent: float = 10.0,
    source_options: dict = {},  # noqa: B006 - kfp's defaults are JSON values
) -> NamedTuple("Outputs", [("version", int), ("decision", str), ("reason", str)]):
    trained = train(quality=quality)
    step = modelsync_step(
        model=trained.outputs["model"],
        metrics=trained.outputs["Output"],
        source=source,
        channel=channel,
        gates=gates,
        baseline=baseline,
        percent=percent,
        source_options=source_options,
    )
    outputs = NamedTuple("Outputs", [("version", int), ("decision", str), ("reason", str)])  # noqa: UP014
    return outputs(step.outputs["version"], step.outputs["decision"], step.outputs["reason"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", type=Path, help="Write the pipeline's YAML here and stop.")
    parser.add_argument("--source", help="Source URL of the model (e.g. gs://bucket/ranker).")
    parser.add_argument("--channel", default="prod")
    parser.add_argument("--quality", type=float, default=0.4)
    parser.add_argument("--gate", action="append", default=[], help="A gate rule (repeatable).")
    parser.add_argument("--baseline", type=int, default=0)
    parser.add_argument("--percent", type=float, default=10.0)
    parser.add_argument("--source-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--pipeline-root", default="./kfp-local-root")
    args = parser.parse_args(argv)
    if args.compile is not None:
        compiler.Compiler().compile(train_and_release, str(args.compile))
        return 0
    if args.source is None:
        parser.error("--source is required to run the pipeline")
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=args.pipeline_root)
    # The runner prints every step's log on standard output: to standard error with
    # them, so that standard output is the outputs alone, for the caller to read.
    with contextlib.redirect_stdout(sys.stderr):
        run = train_and_release(
            quality=args.quality,
            source=args.source,
            channel=args.channel,
            gates=args.gate,
            baseline=args.baseline,
            percent=args.percent,
            source_options=dict(pair.split("=", 1) for pair in args.source_option),
        )
    print(json.dumps({name: run.outputs[name] for name in ("version", "decision", "reason")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
