"""Seldon MLServer, through its model repository API (the V2 repository extension).

Point MLServer's ``model_repository_root`` at ``<store>``. Each revision carries its
``model-settings.json`` (MLServer loads every one it finds, from the folder it sits
in), which must name the model; its ``parameters.version``, when set, must be the
revision's version. modelsync calls ``POST /v2/repository/models/<m>/load``, which
answers when the load is over, with MLServer's error when it failed; then asks
``/v2/models/<m>/versions/<v>/ready`` (or ``/v2/models/<m>/ready`` for settings
without a version). Smoke requests go to ``/v2/models/<m>[/versions/<v>]/infer``
alike.

Only the revision being served is in ``<store>/<model>`` (the previous one waits in
the state directory): MLServer's load takes every settings file of the model it
finds and would keep an older version loaded beside the new one.

Only settings without a version swap without a failed request on the unversioned
route: MLServer 1.7.1 reloads those in place (new loaded, then old unloaded), but makes
a newer version the model's default before loading it (docs/servers.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelsync.bakeconfig import MetricSeries
from modelsync.cancel import CancelToken
from modelsync.errors import RefusedError, StoreError
from modelsync.fsutil import read_regular
from modelsync.oneline import quote
from modelsync.reload import Notifier, Probe, Prober, ReloadTarget, parse_json
from modelsync.servers.base import MetricsEndpoint, PresetDefaults, PresetModel, on_port
from modelsync.servers.v2 import RepositoryLoad, infer_url, ready_probe

__all__ = ["PRESET", "SETTINGS_FILE"]

SETTINGS_FILE = "model-settings.json"
# MLServer's settings are a few hundred bytes; a revision's file is read whole into
# memory each pass, so a larger one (1.2 GB ended every pass with MemoryError) is
# refused by its size before any read.
SETTINGS_LIMIT = 1 << 20
# MLServer's metrics server (MLSERVER_METRICS_PORT), apart from its API. Counters per
# model and version label, read off MLServer 1.7 (docs/servers.md); requests to the
# unversioned route are labelled version "None", so the bake sums every label of the
# model (one version is served at a time). The duration is a summary without
# quantiles: the mean latency, no p50/p99.
METRICS_PORT = 8082
SERIES = MetricSeries(
    success="model_infer_request_success_total",
    failure="model_infer_request_failure_total",
    duration_sum="model_infer_request_duration_sum",
    duration_count="model_infer_request_duration_count",
)


def _settings(path: Path) -> dict[str, Any]:
    file = path / SETTINGS_FILE
    try:
        doc = parse_json(read_regular(file, SETTINGS_LIMIT))
    except FileNotFoundError:
        raise RefusedError(
            f"{file}: missing; MLServer loads a revision through its {SETTINGS_FILE}"
        ) from None
    except StoreError as exc:
        # Too large, or not a regular file: the revision's file, refused with it.
        raise RefusedError(f"{SETTINGS_FILE} not read: {exc}") from None
    except (OSError, ValueError) as exc:
        raise RefusedError(f"{file}: not readable JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise RefusedError(f"{file}: not a JSON object")
    return doc


def settings_version(path: Path) -> str | None:
    """``parameters.version`` of the revision at ``path`` (None when it sets none)."""
    try:
        params = _settings(path).get("parameters")
    except RefusedError:
        return None
    version = params.get("version") if isinstance(params, dict) else None
    return str(version) if version is not None else None


class SettingsProber:
    def __init__(self, base_url: str) -> None:
        self._base = base_url

    def probe(self, target: ReloadTarget, timeout: float, cancel: CancelToken) -> Probe:
        versioned = settings_version(target.path) is not None
        return ready_probe(
            self._base, target.model, target.version if versioned else None, timeout, cancel
        )


class MlServer(PresetDefaults):
    name = "mlserver"
    default_url = "http://127.0.0.1:8080"
    exclusive = True

    def notifier(self, model: PresetModel) -> Notifier | None:
        return RepositoryLoad(
            "MLServer", model.server_url or self.default_url, model.confirm_timeout
        )

    def prober(self, model: PresetModel) -> Prober:
        return SettingsProber(model.server_url or self.default_url)

    def infer_url(self, model: PresetModel, version: int, path: Path) -> str:
        # Settings without a version are served unversioned; the store holds only
        # this revision then, so the model's own endpoint reaches it.
        versioned = settings_version(path) is not None
        base = model.server_url or self.default_url
        return infer_url(base, model.name, version if versioned else None)

    def metrics(self, model: PresetModel) -> MetricsEndpoint:
        url = on_port(model.server_url or self.default_url, METRICS_PORT, "/metrics")
        return MetricsEndpoint(url, SERIES)

    def check_revision(self, model: PresetModel, version: int, path: Path) -> None:
        doc = _settings(path)
        file = path / SETTINGS_FILE
        if doc.get("name") != model.name:
            raise RefusedError(
                f"{file}: name is {quote(doc.get('name'))}, must be {model.name!r} "
                "(without it MLServer names the model after the version directory)"
            )
        params = doc.get("parameters")
        named = params.get("version") if isinstance(params, dict) else None
        if named is not None and str(named) != str(version):
            raise RefusedError(
                f"{file}: parameters.version is {quote(named)}, but this is version {version}"
            )


PRESET = MlServer()
