"""A KServe model server whose repository serves the version directory modelsync keeps.

    python app.py --models_dir /data/models --http_port 8080

``VersionedRepository.load(name)`` loads the highest-numbered directory under
``<models_dir>/<name>/`` (modelsync keeps exactly one there for the kserve preset);
``POST /v2/repository/models/<name>/load`` calls it, and a failure leaves the model
that was serving in place. The model itself adds its ``weights.json`` "k" to each
instance (V1 ``{"instances": [...]}``) or to each value of the first input (V2
``/v2/models/<name>/infer``, where modelsync's smoke requests go): replace
``AddModel`` with your own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelRepository, ModelServer


class AddModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path
        self.k = 0.0

    def load(self) -> bool:
        self.k = float(json.loads((self.path / "weights.json").read_text())["k"])
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            x = np.asarray(payload.inputs[0].as_numpy(), dtype=np.float32)
            out = InferOutput(name="Y", shape=list(x.shape), datatype="FP32")
            out.set_data_from_numpy(x + np.float32(self.k), binary_data=False)
            return InferResponse(payload.id or "", self.name, [out])
        return {"predictions": [float(x) + self.k for x in payload["instances"]]}


class VersionedRepository(ModelRepository):  # type: ignore[misc]
    def load(self, name: str) -> bool:
        return self.load_model(name)

    def load_model(self, name: str) -> bool:
        model_dir = Path(self.models_dir) / name
        versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
        if not versions:
            raise FileNotFoundError(f"{model_dir}: no version directory")
        model = AddModel(name, model_dir / str(versions[-1]))
        model.load()
        self.update(model)  # replaces the serving model only once the new one loaded
        return bool(model.ready)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models_dir", required=True)
    parser.add_argument("--http_port", type=int, default=8080)
    args = parser.parse_args()
    repository = VersionedRepository(args.models_dir)
    for entry in sorted(Path(args.models_dir).iterdir()):
        if entry.is_dir():
            try:
                repository.load_model(entry.name)
            except Exception as exc:  # a broken model must not keep the others down
                print(f"app: cannot load {entry.name}: {exc}", flush=True)
    server = ModelServer(
        http_port=args.http_port, enable_grpc=False, registered_models=repository, workers=1
    )
    server.start([])


if __name__ == "__main__":
    main()
