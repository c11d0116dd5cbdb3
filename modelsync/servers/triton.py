"""NVIDIA Triton Inference Server, through its model repository extension.

Point ``--model-repository`` at ``<store>``. A revision may carry ``config.pbtxt``;
it is put at ``<store>/<model>/config.pbtxt`` with the version (Triton reads it
there) and put back on rollback.

- ``mode = "explicit"`` (``--model-control-mode=explicit``, the default here):
  modelsync calls ``POST /v2/repository/models/<m>/load``, which answers when the
  load is over, with Triton's error when it failed.
- ``mode = "poll"`` (``--model-control-mode=poll``): Triton finds the version itself.

Either way the verdict is read from ``POST /v2/repository/index``: the version's
state (READY, LOADING, UNAVAILABLE) and Triton's reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from modelsync.bakeconfig import MetricSeries
from modelsync.cancel import CancelToken
from modelsync.confirm import ask
from modelsync.errors import RefusedError, StoreError
from modelsync.fsutil import read_regular
from modelsync.oneline import quote
from modelsync.reload import (
    Notifier,
    Probe,
    Prober,
    ProbeState,
    ReloadTarget,
    parse_json,
    server_words,
)
from modelsync.servers.base import MetricsEndpoint, PresetDefaults, PresetModel, on_port
from modelsync.servers.v2 import RepositoryLoad, infer_url

__all__ = ["PRESET"]

CONFIG_FILE = "config.pbtxt"
# A model configuration is kilobytes; one read whole each pass has a bound (a huge one
# is refused by its size, before any read).
CONFIG_LIMIT = 1 << 20
# Triton's metrics port (--metrics-port), apart from its HTTP API. Counters per model
# and version, read off Triton 2.x (docs/servers.md); no latency histogram by default,
# so the bake has the mean latency, and no p50/p99.
METRICS_PORT = 8002
SERIES = MetricSeries(
    success="nv_inference_request_success",
    failure="nv_inference_request_failure",
    duration_sum="nv_inference_request_duration_us",
    duration_scale=1e-6,
)
# Triton marks a version it unloaded on purpose UNAVAILABLE with this reason.
_UNLOADED = "unloaded"


class TritonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    mode: Literal["explicit", "poll"] = "explicit"


class IndexProber:
    def __init__(self, base_url: str) -> None:
        self._url = base_url.rstrip("/") + "/v2/repository/index"

    def probe(self, target: ReloadTarget, timeout: float, cancel: CancelToken) -> Probe:
        answer = ask("POST", self._url, b"{}", timeout, cancel)
        if isinstance(answer, Probe):
            return answer
        status, body = answer
        if not 200 <= status < 300:
            return Probe(ProbeState.LOADING, f"HTTP {status}: {server_words(body)}")
        try:
            entries = parse_json(body)
        except ValueError:
            return Probe(ProbeState.LOADING, "index answer is not JSON")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("name") != target.model:
                continue
            if str(entry.get("version")) != str(target.version):
                continue
            state = str(entry.get("state", ""))
            reason = str(entry.get("reason") or "")
            if state == "READY":
                return Probe(ProbeState.LOADED)
            if state == "UNAVAILABLE" and reason and reason != _UNLOADED:
                return Probe(ProbeState.FAILED, server_words(reason.encode()))
            if state in ("LOADING", "UNLOADING"):
                return Probe(ProbeState.LOADING, state)
            return Probe(ProbeState.ABSENT, f"{state} {reason}".strip())
        return Probe(ProbeState.ABSENT, f"version {target.version} not in the repository index")


class Triton(PresetDefaults):
    name = "triton"
    default_url = "http://127.0.0.1:8000"
    model_files = (CONFIG_FILE,)

    def options(self, raw: Mapping[str, Any]) -> TritonOptions:
        return TritonOptions.model_validate(raw)

    def notifier(self, model: PresetModel) -> Notifier | None:
        if self.options(model.server_options).mode == "poll":
            return None
        return RepositoryLoad("Triton", model.server_url or self.default_url, model.confirm_timeout)

    def prober(self, model: PresetModel) -> Prober:
        return IndexProber(model.server_url or self.default_url)

    def infer_url(self, model: PresetModel, version: int, path: Path) -> str:
        return infer_url(model.server_url or self.default_url, model.name, version)

    def metrics(self, model: PresetModel) -> MetricsEndpoint:
        url = on_port(model.server_url or self.default_url, METRICS_PORT, "/metrics")
        return MetricsEndpoint(url, SERIES)

    def check_revision(self, model: PresetModel, version: int, path: Path) -> None:
        """A config.pbtxt that names another model would be refused by Triton."""
        config = path / CONFIG_FILE
        try:
            text = read_regular(config, CONFIG_LIMIT).decode(errors="replace")
        except FileNotFoundError:
            return
        except StoreError as exc:
            raise RefusedError(f"{CONFIG_FILE} not read: {exc}") from None
        named = re.search(r'^\s*name\s*:\s*"([^"]*)"', text, re.MULTILINE)
        if named and named.group(1) != model.name:
            raise RefusedError(
                f"{config}: names model {quote(named.group(1))}, but it is served as {model.name!r}"
            )


PRESET = Triton()
