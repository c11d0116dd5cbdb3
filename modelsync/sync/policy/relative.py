"""The relative gate on a host: a new candidate against the revision this host serves
(production) and the model's baseline revision ([models.gates], modelsync.gates).

It judges only a revision newer than the active one: a channel going back, or a
rollback, is a deliberate move to an older revision, which may well be worse than
what runs (that is why it is happening). The baseline's manifest is read from the
bucket and held to the same signature policy and binding as any candidate's; the
verdict is kept in the state for the status page, passed or not.
"""

from __future__ import annotations

import functools

from modelsync.errors import GateError, RefusedError
from modelsync.gates import Sides, evaluate
from modelsync.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, SIGNATURE_NAME, Manifest
from modelsync.retry import call_with_retry
from modelsync.sources import Source
from modelsync.sync.context import PassContext
from modelsync.sync.policy.candidate import MAX_SIGNATURE_BYTES, Candidate, check_signature, guard

__all__ = ["check_relative"]


def check_relative(ctx: PassContext, source: Source, candidate: Candidate) -> None:
    """RefusedError (naming each failed rule and both values) when ``candidate`` fails
    the model's gate rules; nothing when it has none, or is not newer than production."""
    gates = ctx.model.gates
    if not gates.rules:
        return
    active = ctx.ms.active_version()
    if active is not None and candidate.version <= active:
        return
    production = ctx.ms.manifest_of(active) if active is not None else None
    baseline = _baseline(ctx, source, gates.baseline) if gates.baseline is not None else None
    sides = Sides(
        production_version=active,
        # An active revision whose manifest cannot be read (a marker-only producer) has
        # no metrics: every rule against it meets a missing value.
        production=(production.metrics if production else {}) if active is not None else None,
        baseline_version=gates.baseline,
        baseline=baseline,
    )
    verdict = evaluate(gates, candidate.manifest.metrics, sides, candidate.version)
    ctx.state.gate = verdict
    if not verdict.passed:
        exc = RefusedError(f"{source.url}/{candidate.version}: {verdict.reason}")
        exc.metrics = dict(candidate.manifest.metrics)
        raise exc


def _baseline(ctx: PassContext, source: Source, version: int) -> dict[str, float]:
    """The baseline revision's metrics, checked as a candidate's manifest is (signature
    policy, model and version binding). A baseline that is missing or fails its checks
    fails the pass (GateError) instead of refusing the candidate for good: it says
    nothing about the candidate, which is judged once the baseline is readable."""
    where = f"{source.url}/{version}/{MANIFEST_NAME}"
    raw = _read(ctx, source, version, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    if raw is None:
        raise GateError(f"{where}: the gate's baseline revision is not complete (no manifest)")
    try:
        if ctx.model.verify.public_keys:
            signature = _read(ctx, source, version, SIGNATURE_NAME, MAX_SIGNATURE_BYTES)
            check_signature(ctx.model, f"{source.url}/{version}/{SIGNATURE_NAME}", raw, signature)
        with guard(where):
            manifest = Manifest.parse(raw, where)
    except RefusedError as exc:
        raise GateError(f"the gate's baseline: {exc}") from exc
    if (manifest.model, manifest.version) != (ctx.model.name, version):
        raise GateError(f"{where}: the gate's baseline is not revision {version} of this model")
    return dict(manifest.metrics)


def _read(ctx: PassContext, source: Source, version: int, name: str, limit: int) -> bytes | None:
    return call_with_retry(
        functools.partial(source.read_object, version, name, limit, ctx.cancel),
        ctx.retry,
        ctx.cancel,
        f"{source.url}/{version}/{name}",
        ctx.log,
    )
