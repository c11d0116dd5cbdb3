"""The relative gate at publish and release time: a candidate against its channel's
stable revision and the baseline, both read from the bucket.

Used by `modelsync publish --gate`, `modelsync release start --gate` and the Kubeflow
Pipelines component: each asks ``judge`` before writing anything and writes nothing
when the verdict fails (``require``). The metrics compared are the ones the revisions'
manifests carry; the publisher trusts its own bucket here (hosts check signatures).
"""

from __future__ import annotations

from collections.abc import Mapping

from modelsync.cancel import CancelToken
from modelsync.channel import MAX_POINTER_BYTES, channel_key, parse_envelope
from modelsync.errors import ChannelError, ConfigError, RefusedError
from modelsync.gates import GatesConfig, Sides, Verdict, evaluate
from modelsync.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest
from modelsync.sources import Source
from modelsync.sources.control import Control

__all__ = ["judge", "judge_against", "manifest_metrics", "require", "stable_version"]


def stable_version(source: Source, channel: str, cancel: CancelToken) -> int | None:
    """The stable version ``channel``'s pointer names (None: no pointer, or none named)."""
    got = source.get_control(channel_key(channel), MAX_POINTER_BYTES, None, cancel)
    if not isinstance(got, Control):
        return None
    return parse_envelope(got.data, f"{source.url}/{channel_key(channel)}").pointer.stable


def manifest_metrics(source: Source, version: int, cancel: CancelToken) -> dict[str, float]:
    """The metrics of ``version``'s manifest; ChannelError when it is not complete."""
    where = f"{source.url}/{version}/{MANIFEST_NAME}"
    raw = source.read_object(version, MANIFEST_NAME, MAX_MANIFEST_BYTES, cancel)
    if raw is None:
        raise ChannelError(f"{where}: no such complete version (no {MANIFEST_NAME})")
    return dict(Manifest.parse(raw, where).metrics)


def judge(
    source: Source,
    channel: str | None,
    gates: GatesConfig,
    candidate: Mapping[str, float],
    candidate_version: int | None,
    cancel: CancelToken,
) -> Verdict:
    """``candidate``'s metrics against ``channel``'s stable revision and the baseline."""
    if gates.needs_production and channel is None:
        raise ConfigError("a gate rule compares with production: name the channel (--channel)")
    stable = stable_version(source, channel, cancel) if channel is not None else None
    return judge_against(source, stable, gates, candidate, candidate_version, cancel)


def judge_against(
    source: Source,
    production_version: int | None,
    gates: GatesConfig,
    candidate: Mapping[str, float],
    candidate_version: int | None,
    cancel: CancelToken,
) -> Verdict:
    """``candidate``'s metrics against ``production_version`` (None: there is none yet)
    and the baseline, their metrics read from their manifests."""
    production = None
    if production_version is not None and gates.needs_production:
        production = manifest_metrics(source, production_version, cancel)
    sides = Sides(
        production_version=production_version,
        production=production,
        baseline_version=gates.baseline,
        baseline=(
            manifest_metrics(source, gates.baseline, cancel) if gates.baseline is not None else None
        ),
    )
    return evaluate(gates, candidate, sides, candidate_version)


def require(verdict: Verdict, where: str) -> None:
    """RefusedError naming the failed rules and their values, unless every rule held."""
    if not verdict.passed:
        raise RefusedError(f"{where}: refused by its gate: {verdict.reason}")
