"""The shape every server preset has (one module per server, see __init__)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from modelsync.reload import Notifier, Prober

__all__ = ["NoOptions", "PresetDefaults", "PresetModel", "ServerPreset"]


class NoOptions(BaseModel):
    """A preset without options of its own: any key in server_options is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


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
