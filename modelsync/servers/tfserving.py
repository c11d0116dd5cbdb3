"""TensorFlow Serving: it polls <store>/<model> itself and serves the highest version.

Point ``--model_base_path`` at ``<store>/<model>`` (or a model config file at
``<store>``). modelsync tells it nothing; it confirms through the REST model status
(``GET /v1/models/<model>``), whose per-version error is the server's verdict. Smoke
requests go to ``POST /v1/models/<model>/versions/<v>:predict``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from modelsync.confirm.tfserving import TfServingProber
from modelsync.reload import Prober
from modelsync.servers.base import PresetDefaults, PresetModel

__all__ = ["PRESET"]


class TfServing(PresetDefaults):
    name = "tfserving"
    default_url = "http://127.0.0.1:8501"

    def prober(self, model: PresetModel) -> Prober:
        base = (model.server_url or self.default_url).rstrip("/")
        # The model name is fixed here; braces in it must not look like a template.
        name = quote(model.name, safe="").replace("{", "{{").replace("}", "}}")
        return TfServingProber(f"{base}/v1/models/{name}")

    def infer_url(self, model: PresetModel, version: int, path: Path) -> str:
        base = (model.server_url or self.default_url).rstrip("/")
        return f"{base}/v1/models/{quote(model.name, safe='')}/versions/{version}:predict"


PRESET = TfServing()
