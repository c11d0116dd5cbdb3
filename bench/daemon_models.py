"""The daemon idle with many models: RSS, and requests per idle poll per model.

    python -m bench.daemon_models [--models 1 200] [--idle-polls 3]

For each model count N: N models, each with one small revision, on a gs:// bucket
served by gcp-storage-emulator behind a counting proxy (tests/faultproxy.py). One
`modelsync run` follows all N with ``interval = 20s``; once every model has activated
its revision the proxy's counts are reset and the daemon idles for a few intervals.
Printed: the daemon's RSS once settled (VmRSS) and its high-water mark (VmHWM), and
the requests the proxy saw per model per idle poll, by kind (a poll of an unchanged
model should cost one listing and nothing else).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.daemon_resources import cpu_seconds, rss_mb
from modelsync.manifest import MANIFEST_NAME
from tests.daemonproc import DaemonProcess
from tests.emulators import stop
from tests.faultproxy import FaultProxy
from tests.gcs_emulator import start as start_gcs
from tests.helpers import manifest_doc, model_files

INTERVAL_S = 20


def _client(endpoint: str):  # type: ignore[no-untyped-def]
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="bench",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


def _publish(endpoint: str, bucket: str, models: int) -> None:
    client = _client(endpoint)
    handle = client.bucket(bucket)
    files = model_files(1, size=2048)
    for index in range(models):
        name = f"m{index:03d}"
        for key, data in files.items():
            handle.blob(f"models/{name}/1/{key}").upload_from_string(data)
        doc = manifest_doc(files, name, 1)
        handle.blob(f"models/{name}/1/{MANIFEST_NAME}").upload_from_string(json.dumps(doc))
    client.close()


def _kind(path: str) -> str:
    if "/o?" in path or path.endswith("/o"):
        return "list"
    if "alt=media" in path:
        return "media"
    return "metadata"


def measure(models: int, idle_polls: int, work: Path) -> dict[str, str]:
    proc, endpoint = start_gcs()
    try:
        bucket = f"bench-{models}"
        client = _client(endpoint)
        client.create_bucket(bucket)
        client.close()
        _publish(endpoint, bucket, models)
        proxy = FaultProxy(int(endpoint.rsplit(":", 1)[1])).start()
        store = work / f"store-{models}"
        config = work / f"c-{models}.toml"
        lines = [f'store = "{store}"', f'interval = "{INTERVAL_S}s"', "jitter = 0.0"]
        for index in range(models):
            name = f"m{index:03d}"
            lines += ["[[models]]", f'name = "{name}"', f'source = "gs://{bucket}/models/{name}"']
        config.write_text("\n".join(lines) + "\n")
        daemon = DaemonProcess(
            ["--config", str(config)],
            work / f"log-{models}",
            env={"STORAGE_EMULATOR_HOST": proxy.url, "MODELSYNC_LOG_LEVEL": "warning"},
        )
        try:
            deadline = time.monotonic() + 600
            while sum(1 for i in range(models) if (store / f"m{i:03d}" / "1").exists()) < models:
                if time.monotonic() > deadline or daemon.proc.poll() is not None:
                    raise SystemExit(f"{models} models: not all activated")
                time.sleep(0.5)
            # Let the passes that activated finish and the first idle round start clean.
            time.sleep(INTERVAL_S / 2)
            proxy.reset_counts()
            cpu0 = cpu_seconds(daemon.pid)
            time.sleep(INTERVAL_S * idle_polls)
            cpu = cpu_seconds(daemon.pid) - cpu0
            with proxy.lock:
                kinds = Counter(_kind(path) for _method, path in proxy.requests)
                total = len(proxy.requests)
            rss, hwm = rss_mb(daemon.pid), rss_mb(daemon.pid, "VmHWM")
        finally:
            daemon.stop()
            proxy.stop()
        polls = models * idle_polls
        return {
            "models": str(models),
            "RSS idle MB": f"{rss:.1f}",
            "VmHWM MB": f"{hwm:.1f}",
            "requests per model per idle poll": f"{total / polls:.2f}",
            "by kind": ", ".join(f"{k} {v / polls:.2f}" for k, v in sorted(kinds.items())),
            "CPU per idle poll ms": f"{cpu / polls * 1000:.1f}",
        }
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--idle-polls", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelsync-bench-models-"))
    try:
        rows = [measure(n, args.idle_polls, work) for n in args.models]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for row in rows:
        print("| " + " | ".join(row[k] for k in keys) + " |")


if __name__ == "__main__":
    main()
