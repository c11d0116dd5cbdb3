"""A Kubeflow Pipelines (kfp 2.x) component: gate, publish and release one model revision.

It takes the model directory a training step wrote (a ``Model`` artifact) and its
evaluation metrics, judges them with modelsync's relative gate against the channel's
stable revision and the baseline (modelsync.channel_gate), and only if every rule
holds publishes the directory as a new revision (modelsync.publish) and starts a
canary of it, or promotes it, on the channel (modelsync.release). Outputs: the
version published (0 when refused), the decision and the reason.

A refusal is an outcome, not a failure: the step succeeds with decision "refused" and
the gate's reason, so the pipeline can report it; errors (storage unreachable, a canary
of another version in progress) fail the step. Compiled to modelsync_step.yaml beside
this file: `python integrations/kfp/modelsync_step.py` writes it; tests/test_kfp.py
checks it matches this source.
"""

from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl

# The modelsync image with kfp added (docs/pipelines.md#the-image): the step imports
# modelsync, and kfp's executor runs it.
IMAGE = "ghcr.io/example/modelsync-kfp:0.1.0"


@dsl.component(base_image=IMAGE)
def modelsync_step(
    model: dsl.Input[dsl.Model],
    metrics: dict,
    source: str,
    channel: str,
    gates: list,
    baseline: int = 0,
    if_missing: str = "refuse",
    action: str = "canary",
    percent: float = 10.0,
    source_options: dict = {},  # noqa: B006 - kfp's defaults are JSON values
) -> NamedTuple("Outputs", [("version", int), ("decision", str), ("reason", str)]):
    """Gate ``model`` (with ``metrics``) against ``channel``'s stable revision and the
    baseline; publish it under ``source`` and start a canary at ``percent`` (``action``
    "canary"; the first revision of a channel is promoted) or promote it ("promote")."""
    import collections
    import getpass
    import socket
    from pathlib import Path

    from modelsync.cancel import CancelToken
    from modelsync.channel_gate import judge_against, require, stable_version
    from modelsync.errors import RefusedError
    from modelsync.gates import parse_rules
    from modelsync.publish import publish
    from modelsync.release import Release
    from modelsync.sources import check_source, open_source

    outputs = collections.namedtuple("Outputs", ["version", "decision", "reason"])
    if action not in ("canary", "promote"):
        raise ValueError(f"action: {action!r} is neither 'canary' nor 'promote'")
    options = {str(k): v for k, v in source_options.items()}
    url, _ = check_source(source, options)
    rules = parse_rules([str(rule) for rule in gates], baseline or None, if_missing)
    candidate = {str(k): float(v) for k, v in metrics.items()}
    cancel = CancelToken()
    store = open_source(url, options)
    name = url.rstrip("/").rsplit("/", 1)[-1]
    try:
        release = Release(store, name, channel, f"kfp:{getpass.getuser()}@{socket.gethostname()}")
        stable = stable_version(store, channel, cancel)
        verdict = judge_against(store, stable, rules, candidate, None, cancel)
        if not verdict.passed:
            return outputs(0, "refused", verdict.reason)
        pointer, _ = release.read()
        if action == "canary" and pointer is not None and pointer.canary is not None:
            reason = f"{release.where}: canary {pointer.canary.version} is in progress"
            return outputs(0, "refused", reason + ": promote or abort it first")
        version = publish(Path(model.path), url, metrics=candidate, source_options=options)

        def gate(current: int | None) -> None:
            # The pointer may have moved since it was judged: judged again as written.
            again = judge_against(store, current, rules, candidate, version, cancel)
            require(again, f"{release.where}: canary {version}")

        try:
            if action == "promote" or stable is None:
                release.promote(version)
                return outputs(version, "promoted", verdict.reason or "every gate rule held")
            release.start(version, percent, None, None, gate)
        except RefusedError as exc:
            return outputs(version, "refused", f"published, not released: {exc}")
        return outputs(version, "canary", verdict.reason or "every gate rule held")
    finally:
        store.close()


def compile_to(path: Path) -> None:
    """Write the component's YAML (what `kfp.components.load_component_from_file` reads)."""
    compiler.Compiler().compile(modelsync_step, str(path))


if __name__ == "__main__":
    compile_to(Path(__file__).with_name("modelsync_step.yaml"))
