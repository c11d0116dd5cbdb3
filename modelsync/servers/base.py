"""The shape every server preset has (one module per server, see __init__)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from modelsync.bakeconfig import MetricSeries
from modelsync.configbase import NoOptions
from modelsync.reload import Notifier, Prober

__all__ = [
    "MetricsEndpoint",
    "PresetDefaults",
    "PresetModel",
    "ServerPreset",
    "on_port",
]


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where a server's Prometheus text is, and which series hold a model's traffic."""

    url: str
    series: MetricSeries


def on_port(base_url: str, port: int | None, path: str) -> str:
    """``base_url``'s scheme and host with ``port`` (None: its own) and ``path``: the
    metrics port of servers that serve metrics apart from their API."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, path, "", ""))


class PresetModel(Protocol):
    """What a preset reads of a model's configuration (modelsync.config.ModelConfig)."""

    @property
    def name(self) -> str: ...

    @property
    def server_url(self) -> str | None: ...

    @property
    def server_options(self) -> Mapping[str, Any]: ...

    @property
    def confirm_timeout(self) -> float: ...


class ServerPreset(Protocol):
    name: str
    # The server's HTTP endpoint when server_url is not set: its usual local port.
    default_url: str
    # Whether <store>/<model>/current exists for this server (servers that scan the
    # repository would load it as one more model or version).
    current_link: bool
    # Files a revision may carry that the server reads from <store>/<model>/.
    model_files: tuple[str, ...]
    # Whether <store>/<model> holds only the version being served, even while a new
    # one is confirmed (servers that load every version they find keep old ones).
    exclusive: bool

    def options(self, raw: Mapping[str, Any]) -> BaseModel:
        """``raw`` validated (pydantic ValidationError names the bad key)."""
        ...

    def notifier(self, model: PresetModel) -> Notifier | None:
        """How the server is told; None when it watches the directory itself."""
        ...

    def prober(self, model: PresetModel) -> Prober | None:
        """How the server is asked, once, what it does with a version (None: the
        preset has no way of its own; [models.confirm] decides)."""
        ...

    def check_revision(self, model: PresetModel, version: int, path: Path) -> None:
        """Raise RefusedError if this server cannot be given the staged revision."""
        ...

    def infer_url(self, model: PresetModel, version: int, path: Path) -> str | None:
        """Where an inference request reaches ``version`` (served from ``path``) and
        no other; None when the server has no inference API modelsync knows."""
        ...

    def metrics(self, model: PresetModel) -> MetricsEndpoint | None:
        """The server's own metrics for the bake (None: the preset knows none; the
        model's [models.bake] must name them)."""
        ...


class PresetDefaults:
    """What a preset has unless it says otherwise: no options, nothing to tell the
    server (it watches the directory), no rule of its own for revisions."""

    current_link = False
    model_files: tuple[str, ...] = ()
    exclusive = False

    def options(self, raw: Mapping[str, Any]) -> BaseModel:
        return NoOptions.model_validate(raw)

    def notifier(self, model: PresetModel) -> Notifier | None:
        return None

    def check_revision(self, model: PresetModel, version: int, path: Path) -> None:
        return None

    def infer_url(self, model: PresetModel, version: int, path: Path) -> str | None:
        return None

    def metrics(self, model: PresetModel) -> MetricsEndpoint | None:
        return None
