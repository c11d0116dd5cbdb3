"""`make demo`: the whole story on the embedded default (a local bucket directory).

Publishes sample revisions of a model to ./demo-run/bucket, syncs them into
./demo-run/store with the real `modelsync` command, and shows what is on disk.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path.cwd() / "demo-run"
BUCKET = ROOT / "bucket" / "ranker"
STORE = ROOT / "store"
SOURCE = f"file://{BUCKET}"
FLAGS = ["--store", str(STORE), "--model", "ranker", "--source", SOURCE]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def modelsync(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real CLI, echoing the command and its one-line outcome."""
    print("$ modelsync " + " ".join(args), flush=True)
    env = {**os.environ, "MODELSYNC_LOG_FORMAT": "console"}
    out = subprocess.run(
        [sys.executable, "-m", "modelsync", *args],
        text=True,
        capture_output=True,
        env=env,
        check=False,
    )
    for line in (out.stdout + out.stderr).strip().splitlines():
        print("  " + line)
    print(f"  (exit {out.returncode})")
    if check and out.returncode != 0:
        raise SystemExit(f"demo: modelsync {args[0]} failed")
    return out


def make_revision(version: int) -> Path:
    """A SavedModel-shaped directory: the variables change, the graph does not."""
    src = ROOT / "work" / f"ranker-{version}"
    (src / "variables").mkdir(parents=True, exist_ok=True)
    (src / "saved_model.pb").write_bytes(b"demo graph\n")
    rng = random.Random(version)  # noqa: S311 - sample weights, not secrets
    (src / "variables" / "variables.data-00000-of-00001").write_bytes(rng.randbytes(256 * 1024))
    (src / "variables" / "variables.index").write_bytes(b"demo index\n")
    return src


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    BUCKET.mkdir(parents=True)
    say("Publish revision 1 to a local bucket directory, then sync it")
    modelsync(
        "publish", str(make_revision(1)), SOURCE, "--version", "1", "--metric", "ndcg@10=0.41"
    )
    modelsync("sync", *FLAGS)
    say("Publish revision 2: only the changed file is downloaded, the rest is hard-linked")
    modelsync(
        "publish", str(make_revision(2)), SOURCE, "--version", "2", "--metric", "ndcg@10=0.44"
    )
    modelsync("sync", *FLAGS)
    say("A revision whose bytes do not match its manifest is refused; the store is untouched")
    modelsync("publish", str(make_revision(3)), SOURCE, "--version", "3")
    weights = BUCKET / "3" / "variables" / "variables.data-00000-of-00001"
    with weights.open("r+b") as handle:
        handle.write(b"tampered")  # same size, different bytes
    modelsync("sync", *FLAGS, check=False)
    say("What the server sees")
    for entry in sorted(os.listdir(STORE / "ranker")):
        path = STORE / "ranker" / entry
        print(f"  {path}" + (f" -> {os.readlink(path)}" if path.is_symlink() else "/"))
    status = json.loads(modelsync("status", "--json", *FLAGS).stdout)["models"][0]
    print(
        f"\nactive version {status['active_version']}, retained {status['retained']}, "
        f"refused {list(status['refused'])}"
    )


if __name__ == "__main__":
    main()
