"""A small, real model server that cooperates with modelsync (the reference for custom servers).

    python -m examples.tfserver.server --store /models --model ranker --port 8501 \\
        --pidfile /run/tfserver.pid

- Loads <store>/<model>/current with TensorFlow at start and on SIGHUP; or, with
  --poll SECONDS, behaves like TensorFlow Serving itself (the tfserving preset): it
  polls <store>/<model> and serves the highest version directory there.
- Serves a subset of TensorFlow Serving's REST API:
    GET  /v1/models/<model>           {"model_version_status": [{"version", "state", "status"}]}
    POST /v1/models/<model>:predict   {"instances": [[1.0], ...]} -> {"predictions": [...]}
    POST /v1/models/<model>/versions/<v>:predict   the same, from version <v> only: 404
                                      {"error": "Servable not found for request:
                                      Specific(<model>, <v>)"} unless <v> is the one served
- A reload loads the new revision completely before switching to it, so requests
  never see a half-loaded model; if the load fails, the old revision keeps serving
  and the failure is reported in the status (state END, error_code UNKNOWN), which
  is what `confirm.method = "tfserving"` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import types
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class NotServedError(Exception):
    """A request for a version that is not the one served."""


class ModelHolder:
    """The serving revision, swapped whole; and every version's status."""

    def __init__(self, model_dir: Path, poll: bool = False) -> None:
        self.model_dir = model_dir
        self.name = model_dir.name
        self.poll = poll
        self.lock = threading.Lock()
        self.version: int | None = None
        self.function: Any = None
        self.statuses: dict[int, dict[str, Any]] = {}

    def reload(self) -> None:
        import tensorflow as tf

        version = self._wanted()
        if version is None or version == self.version:
            return
        failed = self.statuses.get(version, {}).get("status", {}).get("error_code", "OK")
        if self.poll and failed != "OK":
            return  # like TF Serving: a version that failed is not tried again
        with self.lock:
            self.statuses[version] = _status(version, "LOADING")
        try:
            loaded = tf.saved_model.load(str(self.model_dir / str(version)))
            function = loaded.signatures["serving_default"]
        except Exception as exc:
            message = " ".join(str(exc).split())[:300]
            with self.lock:
                self.statuses[version] = _status(version, "END", "UNKNOWN", message)
            log(f"failed to load version {version}; still serving {self.version}: {message}")
            return
        with self.lock:
            old = self.version
            self.function, self.version = function, version
            self.statuses[version] = _status(version, "AVAILABLE")
            if old is not None:
                self.statuses[old] = _status(old, "END")
        log(f"serving version {version}")

    def _wanted(self) -> int | None:
        if self.poll:
            try:
                names = os.listdir(self.model_dir)
            except OSError:
                return None
            found = [int(n) for n in names if n.isdigit() and (self.model_dir / n).is_dir()]
            return max(found, default=None)
        try:
            return int(os.readlink(self.model_dir / "current"))
        except (OSError, ValueError):
            log("no current revision to load")
            return None

    def predict(
        self, instances: list[Any], wanted: int | None = None
    ) -> tuple[int | None, list[Any]]:
        import tensorflow as tf

        with self.lock:
            function, version = self.function, self.version
        if function is None:
            raise LookupError("no model loaded")
        if wanted is not None and wanted != version:
            # TF Serving's words for a version it does not serve (a 404).
            raise NotServedError(f"Servable not found for request: Specific({self.name}, {wanted})")
        outputs = function(x=tf.constant(instances, dtype=tf.float32))
        return version, outputs["y"].numpy().tolist()


def _status(version: int, state: str, code: str = "OK", message: str = "") -> dict[str, Any]:
    return {
        "version": str(version),
        "state": state,
        "status": {"error_code": code, "error_message": message},
    }


class PredictRoute(NamedTuple):
    """A predict path: for one version, or (None) for whichever is served."""

    version: int | None


def _predict_route(path: str, name: str) -> PredictRoute | None:
    """The predict route ``path`` names, None if it names none."""
    if path == f"/v1/models/{name}:predict":
        return PredictRoute(None)
    prefix, suffix = f"/v1/models/{name}/versions/", ":predict"
    number = path[len(prefix) : -len(suffix)]
    if path.startswith(prefix) and path.endswith(suffix) and number.isdigit():
        return PredictRoute(int(number))
    return None


def log(message: str) -> None:
    print(f"tfserver: {message}", file=sys.stderr, flush=True)


def make_handler(name: str, holder: ModelHolder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            return None

        def _json(self, status: int, doc: object) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/") != f"/v1/models/{name}":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})
                return
            with holder.lock:
                statuses = [holder.statuses[v] for v in sorted(holder.statuses, reverse=True)]
            self._json(HTTPStatus.OK, {"model_version_status": statuses})

        def do_POST(self) -> None:
            route = _predict_route(self.path, name)
            if route is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})
                return
            try:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                version, predictions = holder.predict(request["instances"], route.version)
            except NotServedError as exc:
                self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
                return
            except LookupError as exc:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
                return
            except Exception as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)[:300]})
                return
            self._json(HTTPStatus.OK, {"predictions": predictions, "model_version": version})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--pidfile", type=Path)
    parser.add_argument(
        "--poll", type=float, default=0.0, help="Seconds between scans of the model directory."
    )
    args = parser.parse_args()
    holder = ModelHolder(args.store / args.model, poll=args.poll > 0)
    reload_wanted = threading.Event()

    def on_hup(_signum: int, _frame: types.FrameType | None) -> None:
        reload_wanted.set()

    def on_term(_signum: int, _frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    holder.reload()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.model, holder))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")
    log(f"listening on 127.0.0.1:{args.port}")
    try:
        while True:
            if reload_wanted.wait(args.poll or 1.0) or args.poll:
                reload_wanted.clear()
                holder.reload()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
