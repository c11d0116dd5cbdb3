"""Any other server: today's behaviour, set entirely by [models.notify]/[models.confirm].

The server loads <store>/<model>/current, which this preset keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelsync.reload import Notifier, Prober
from modelsync.servers.base import NoOptions, PresetModel

__all__ = ["PRESET"]


class CustomServer:
    name = "custom"
    default_url = ""
    current_link = True
    model_files: tuple[str, ...] = ()
    exclusive = False

    def options(self, raw: Mapping[str, Any]) -> NoOptions:
        return NoOptions.model_validate(raw)

    def notifier(self, model: PresetModel) -> Notifier | None:
        return None

    def prober(self, model: PresetModel) -> Prober:
        raise NotImplementedError("the custom preset confirms through [models.confirm] only")

    def check_revision(self, model: PresetModel, version: int, path: Path) -> None:
        return None


PRESET = CustomServer()
