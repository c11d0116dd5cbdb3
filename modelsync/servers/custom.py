"""Any other server: today's behaviour, set entirely by [models.notify]/[models.confirm].

The server loads <store>/<model>/current, which this preset keeps.
"""

from __future__ import annotations

from modelsync.reload import Prober
from modelsync.servers.base import PresetDefaults, PresetModel

__all__ = ["PRESET"]


class CustomServer(PresetDefaults):
    name = "custom"
    default_url = ""
    current_link = True

    def prober(self, model: PresetModel) -> Prober | None:
        return None


PRESET = CustomServer()
