"""What each model is serving and why: the report behind `modelsync status` and /status."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from modelsync.bakejournal import Journal, journal_path_of
from modelsync.config import Config, ModelConfig
from modelsync.errors import ManifestError, StoreError
from modelsync.manifest import MANIFEST_NAME, Manifest
from modelsync.state import ModelState
from modelsync.store import ModelStore
from modelsync.volume import Store

__all__ = ["collect_status", "model_status", "rfc3339", "version_label"]


def rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Versions in this range read as Unix times (2001-09-09 to 2100-01-01): the
# TensorFlow Serving and TFX convention, and publish's default.
_UNIX_TIME_VERSIONS = range(1_000_000_000, 4_102_444_800)


def version_label(version: int | None) -> str:
    """``version`` for people: with its date beside it when it looks like a Unix time."""
    if version is None:
        return "none"
    if version in _UNIX_TIME_VERSIONS:
        when = datetime.fromtimestamp(version, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"{version} ({when})"
    return str(version)


def model_status(store: Store, model: ModelConfig, now: float) -> dict[str, Any]:
    """A JSON-ready description of one model's local state."""
    ms = store.model(model.name, model.layout)
    report: dict[str, Any] = {"name": model.name, "source": model.source, "server": model.server}
    try:
        state = ms.load_state()
        active = ms.active_version()
        manifest = ms.manifest_of(active) if active is not None else None
    except StoreError as exc:
        report["error"] = str(exc)
        return report
    created = manifest.created.timestamp() if manifest else None
    report.update(
        active_version=active,
        active_path=str(ms.dir / str(active)) if active is not None else None,
        activated_at=rfc3339(state.activated_at),
        # From the revision's creation by its publisher to its activation here: what a
        # push (or the poll interval) buys.
        publish_to_served_seconds=(
            round(state.activated_at - created, 3)
            if state.activated_at is not None and created is not None
            else None
        ),
        created=rfc3339(created),
        revision_age_seconds=round(now - created, 3) if created is not None else None,
        stale=bool(
            model.max_age is not None and created is not None and now - created > model.max_age
        ),
        retained=ms.cached_versions(),
        refused={str(v): reason for v, reason in sorted(state.refused.items())},
        pinned=state.pinned,
        last_success_at=rfc3339(state.last_success_at),
        last_error=state.last_error,
        last_error_at=rfc3339(state.last_error_at),
        pending=state.pending.version if state.pending else None,
        # False while the active revision stands without the server's confirmation.
        confirmed=state.confirmed,
        rollback_failed=state.rollback_failed,
        server_reason=state.server_reason,
        waiting=(
            {
                "version": state.waiting.version,
                "reason": state.waiting.reason,
                "since": rfc3339(state.waiting.since),
            }
            if state.waiting
            else None
        ),
        unknown_outcomes={str(v): n for v, n in sorted(state.unknown.items())},
        channel=dataclasses.asdict(state.channel) if state.channel else None,
        off_channel=_off_channel(model, state, active),
        max_age_seconds=model.max_age,
        gate=dict(sorted(model.gate.items())),
        gates=_gates(model, state),
        verification=_verification(model),
        revisions=_revisions(ms, active, state),
        history=[{**dataclasses.asdict(e), "at": rfc3339(e.at)} for e in reversed(state.history)],
    )
    _bake(report, ms, model, now)
    return report


def _gates(model: ModelConfig, state: ModelState) -> dict[str, Any] | None:
    """The relative gate's rules and its last verdict: rule, candidate, production and
    baseline side by side (None when the model has no rules)."""
    gates = model.gates
    if not gates.rules:
        return None
    return {
        "rules": list(gates.rules),
        "baseline": gates.baseline,
        "if_missing": gates.if_missing,
        "last": state.gate.as_dict() if state.gate is not None else None,
    }


def _verification(model: ModelConfig) -> dict[str, Any] | None:
    """How revisions are authenticated, and what the signature binds (None when
    nothing is verified): an OMS opt-out that leaves the version unbound is visible."""
    settings = model.verify
    if not (settings.public_keys or settings.oms):
        return None
    return {
        "public_keys": len(settings.public_keys),
        "oms_keys": len(settings.oms_keys),
        "oms_roots": len(settings.oms_roots),
        "require_signature": settings.require_signature,
        "oms_subject": settings.oms_subject if settings.oms else None,
        "oms_version_bound": settings.oms_version_bound if settings.oms else None,
        "warning": settings.oms_unbound_warning(),
    }


def _bake(report: dict[str, Any], ms: ModelStore, model: ModelConfig, now: float) -> None:
    """The bake in progress (``bake``) and each revision's last bake verdict, its figures
    beside the previous revision's (``revisions[].bake``)."""
    journal = Journal.load(journal_path_of(ms.state_path, model.name), _Quiet())
    baking = journal.baking
    report["bake"] = (
        {
            "version": baking.version,
            "previous": baking.previous,
            "started_at": rfc3339(baking.started_at),
            "ends_at": rfc3339(baking.ends_at),
            "remaining_s": round(max(0.0, baking.ends_at - now), 1),
            "verdict": baking.verdict or "baking",
            "reason": baking.reason,
            "previous_figures": (
                baking.previous_figures.model_dump() if baking.previous_figures else None
            ),
            "figures": baking.figures.model_dump() if baking.figures else None,
        }
        if baking is not None and model.bake is not None
        else None
    )
    for revision in report["revisions"]:
        verdict = journal.verdicts.get(revision["version"])
        revision["bake"] = verdict.model_dump() if verdict is not None else None


class _Quiet:
    """Status reads; the pass is the one that says a journal is unreadable."""

    def warning(self, *_args: object, **_kw: object) -> None:
        return None


def _off_channel(model: ModelConfig, state: ModelState, active: int | None) -> str | None:
    """Why this host does not serve the version its channel asks for (None when it
    does, or follows no channel): a host that refused it would otherwise look idle."""
    if model.channel is None:
        return None
    info = state.channel
    if info is None:
        return f"channel {model.channel} not read yet (no pass since it was configured)"
    target = info.target
    if target is None or target == active:
        return None
    if target in state.refused:
        return f"version {version_label(target)} was refused here: {state.refused[target]}"
    if state.pinned is not None:
        return (
            f"pinned to {version_label(state.pinned)} by a manual rollback "
            f"(modelsync unpin {model.name} to follow the channel again)"
        )
    if state.last_error:
        return f"the last pass failed: {state.last_error}"
    return f"version {version_label(target)} is not activated yet (the next pass fetches it)"


def _revisions(ms: ModelStore, active: int | None, state: ModelState) -> list[dict[str, Any]]:
    """The active, retained and refused revisions on disk, newest first, with the
    metrics their manifests carry and what the live checks said once the server loaded
    them: what a person compares before trusting a model."""
    refused, refused_metrics, live = state.refused, state.refused_metrics, state.live_checks
    found: dict[int, tuple[str, Manifest | None]] = {}
    for version in ms.cached_versions():
        found[version] = ("retained", ms.manifest_of(version))
    for version in refused:
        path = ms.quarantine_dir / str(version) / MANIFEST_NAME
        try:
            manifest: Manifest | None = Manifest.parse(path.read_bytes(), str(path))
        except (OSError, ManifestError):
            manifest = None
        found[version] = ("refused", manifest)
    if active is not None:
        found[active] = ("active", ms.manifest_of(active))
    return [
        {
            "version": version,
            "role": role,
            "created": rfc3339(manifest.created.timestamp()) if manifest else None,
            "metrics": dict(sorted(manifest.metrics.items()))
            if manifest
            else refused_metrics.get(version, {}),
            "metadata": {str(k): str(v)[:200] for k, v in manifest.metadata.items()}
            if manifest
            else {},
            "reason": refused.get(version),
            # {"smoke": {"verdict", "requests", "reason"}, "bake": ...}; None: none ran.
            "live": live[version].model_dump(mode="json", exclude_none=True)
            if version in live
            else None,
        }
        for version, (role, manifest) in sorted(found.items(), reverse=True)
    ]


def collect_status(config: Config, store: Store, now: float) -> dict[str, Any]:
    return {
        "store": str(config.store),
        "models": [model_status(store, m, now) for m in config.models],
    }
