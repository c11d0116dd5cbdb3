"""`make demo`: the whole story on the embedded default, in about a minute.

A local bucket directory, a real TensorFlow model server (examples/tfserver), the
modelsync daemon beside it, a new revision picked up and served, and a broken
revision rolled back while the server keeps answering. Everything runs on this
machine under ./demo-run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path.cwd() / "demo-run"
BUCKET = ROOT / "bucket" / "ranker"
STORE = ROOT / "store"
CONFIG = ROOT / "modelsync.toml"
PORT, ADMIN = 18501, 18686
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MODELSYNC_LOG_FORMAT": "json"}
BOLD = "\033[1m" if sys.stdout.isatty() else ""
PLAIN = "\033[0m" if sys.stdout.isatty() else ""


def say(text: str) -> None:
    print(f"\n{BOLD}== {text}{PLAIN}", flush=True)


def modelsync(*args: str) -> subprocess.CompletedProcess[str]:
    print(f"$ modelsync {' '.join(args)}", flush=True)
    out = subprocess.run(
        [sys.executable, "-m", "modelsync", *args],
        env=ENV,
        text=True,
        capture_output=True,
        check=False,
    )
    for line in out.stderr.splitlines():
        show_event(line)
    if out.stdout.strip():
        print("  " + out.stdout.strip().replace("\n", "\n  "))
    print(f"  (exit {out.returncode})")
    return out


def show_event(line: str) -> None:
    try:
        event = json.loads(line)
    except ValueError:
        return
    extra = {
        k: v
        for k, v in event.items()
        if k not in ("event", "level", "timestamp", "model", "version") and v not in (None, [])
    }
    detail = " ".join(f"{k}={v}" for k, v in extra.items())
    version = f" v{event['version']}" if event.get("version") else ""
    print(
        f"  [{event.get('level', '?'):>8}] {event.get('model') or 'modelsync'}{version}: "
        f"{event['event']} {detail[:160]}"
    )


def predict() -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}/v1/models/ranker:predict",
        data=json.dumps({"instances": [[1.0]]}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        answer = json.loads(response.read())
    return f"f(1.0) = {answer['predictions'][0][0]} from version {answer['model_version']}"


def publish(name: str, version: int, *metrics: str) -> None:
    flags = [item for metric in metrics for item in ("--metric", metric)]
    modelsync(
        "publish",
        str(ROOT / "models" / name),
        f"file://{BUCKET}",
        "--version",
        str(version),
        *flags,
    )


def wait_until(check: str, follow: Path, seen: int) -> int:
    """Print the daemon's events until one whose event name starts with ``check``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = follow.read_text().splitlines()
        for line in lines[seen:]:
            show_event(line)
            if f'"event": "{check}' in line:
                return len(lines)
        seen = len(lines)
        time.sleep(0.2)
    raise SystemExit(f"demo: the daemon did not report {check!r} within 60 s")


def main() -> None:
    started = time.monotonic()
    shutil.rmtree(ROOT, ignore_errors=True)
    (ROOT / "models").mkdir(parents=True)
    say("Build three tiny SavedModels (y = w * x): w=2, w=3, and a broken copy of w=3")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.tfserver.make_model",
            f"{ROOT / 'models' / 'v1'}:2.0",
            f"{ROOT / 'models' / 'v2'}:3.0",
        ],
        env=ENV,
        check=True,
        capture_output=True,
    )
    shutil.copytree(ROOT / "models" / "v2", ROOT / "models" / "bad")
    weights = ROOT / "models" / "bad" / "variables" / "variables.data-00000-of-00001"
    weights.write_bytes(bytes(255 - b for b in weights.read_bytes()))
    CONFIG.write_text(f"""store = "{STORE}"
interval = "10m"   # the daemon also wakes on changes under the local bucket
admin = {{ listen = "127.0.0.1:{ADMIN}" }}
[[models]]
name = "ranker"
source = "file://{BUCKET}"
gate = {{ "ndcg@10" = 0.30 }}
notify = {{ method = "signal", pidfile = "{ROOT / "tfserver.pid"}" }}
[models.confirm]
method = "tfserving"
url = "http://127.0.0.1:{PORT}/v1/models/{{model}}"
timeout = "30s"
period = "0.2s"
""")
    print(f"config: {CONFIG}")

    say("Publish revision 1 and sync it once, as an init container would")
    BUCKET.mkdir(parents=True)
    publish("v1", 1, "ndcg@10=0.41")
    modelsync("sync", "--require", "--config", str(CONFIG))

    say("Start the model server (it loads <store>/ranker/current) and the modelsync daemon")
    server_log = (ROOT / "tfserver.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.tfserver.server",
            "--store",
            str(STORE),
            "--model",
            "ranker",
            "--port",
            str(PORT),
            "--pidfile",
            str(ROOT / "tfserver.pid"),
        ],
        env=ENV,
        stdout=server_log,
        stderr=server_log,
    )
    daemon_log = ROOT / "daemon.log"
    with daemon_log.open("w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "modelsync", "run", "--config", str(CONFIG)],
            env=ENV,
            stdout=log,
            stderr=log,
        )
    try:
        while not (ROOT / "tfserver.pid").exists():
            time.sleep(0.1)
        seen = wait_until("first pass done", daemon_log, 0)
        print(f"server: {predict()}")

        say("Publish revision 2: the daemon picks it up, signals the server, waits for AVAILABLE")
        publish("v2", 2, "ndcg@10=0.44")
        seen = wait_until("committed", daemon_log, seen)
        print(f"server: {predict()}")

        say("Publish revision 3, whose weights are broken: the server cannot load it")
        publish("bad", 3, "ndcg@10=0.45")
        seen = wait_until("rolled back", daemon_log, seen)
        print(f"server: {predict()}   (still serving revision 2)")

        say("Publish revision 4 scoring below the gate: refused without a download")
        publish("v2", 4, "ndcg@10=0.12")
        seen = wait_until("revision refused", daemon_log, seen)

        say("What modelsync reports")
        status = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/status", timeout=5).read()
        )["models"][0]
        print(f"  active version {status['active_version']}, retained {status['retained']}")
        for version, reason in status["refused"].items():
            print(f"  refused {version}: {reason[:110]}")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=5).read()
        for line in metrics.decode().splitlines():
            if line.startswith(("modelsync_rollbacks_total", "modelsync_active_version")):
                print(f"  {line}")
        print(
            f"  {STORE / 'ranker'}: "
            + ", ".join(
                f"{p.name} -> {os.readlink(p)}" if p.is_symlink() else p.name
                for p in sorted((STORE / "ranker").iterdir())
            )
        )
    finally:
        daemon.terminate()
        server.terminate()
        daemon.wait(10)
        server.wait(10)
        server_log.close()
    say(f"Done in {time.monotonic() - started:.0f} s; logs in {ROOT}")


if __name__ == "__main__":
    main()
