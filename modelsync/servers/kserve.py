"""KServe's Python model server (``kserve.ModelServer``) with a model repository.

Start the server with a ``kserve.ModelRepository`` subclass whose ``load(name)``
loads the version directory in ``<store>/<name>`` (docs/servers.md has one), and
``models_dir`` = ``<store>``. modelsync calls ``POST /v2/repository/models/<m>/load``,
which answers when the load is over (KServe answers 503 with the error when it
failed), then ``GET /v2/models/<m>/ready``. KServe has no versions of its own, so
only the revision being served is in ``<store>/<model>``. Smoke requests go to
``/v2/models/<m>/infer``: KServe 0.21 answers its versioned route with "Model
versioning not supported yet", and the one model it serves is the revision just
confirmed.
"""

from __future__ import annotations

from pathlib import Path

from modelsync.bakeconfig import MetricSeries
from modelsync.cancel import CancelToken
from modelsync.reload import Notifier, Probe, Prober, ReloadTarget
from modelsync.servers.base import MetricsEndpoint, PresetDefaults, PresetModel, on_port
from modelsync.servers.v2 import RepositoryLoad, infer_url, ready_probe

__all__ = ["PRESET"]

# /metrics on the API's own port, read off KServe 0.21 (docs/servers.md): a latency
# histogram of predict per model name (no version label, no failure counter, and a
# failed predict is timed like any other). The bake has latency (p50/p99 and the
# mean), and no error ratio.
SERIES = MetricSeries(
    model_label="model_name",
    histogram="request_predict_seconds",
    requests="request_predict_seconds_count",
    duration_sum="request_predict_seconds_sum",
)


class ReadyProber:
    def __init__(self, base_url: str) -> None:
        self._base = base_url

    def probe(self, target: ReloadTarget, timeout: float, cancel: CancelToken) -> Probe:
        return ready_probe(self._base, target.model, None, timeout, cancel)


class KServe(PresetDefaults):
    name = "kserve"
    default_url = "http://127.0.0.1:8080"
    exclusive = True

    def notifier(self, model: PresetModel) -> Notifier | None:
        return RepositoryLoad("KServe", model.server_url or self.default_url, model.confirm_timeout)

    def prober(self, model: PresetModel) -> Prober:
        return ReadyProber(model.server_url or self.default_url)

    def infer_url(self, model: PresetModel, version: int, path: Path) -> str:
        return infer_url(model.server_url or self.default_url, model.name, None)

    def metrics(self, model: PresetModel) -> MetricsEndpoint:
        return MetricsEndpoint(
            on_port(model.server_url or self.default_url, None, "/metrics"), SERIES
        )


PRESET = KServe()
