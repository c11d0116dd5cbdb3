"""What OpenSSF Model Signing verification adds to a sync of an LLM-shaped revision.

    python -m bench.oms_overhead [--shard-mb 1000] [--runs 3]

The LLM-shaped revision of bench.download: 3 shards of --shard-mb MB plus 20 small
files (config, tokenizer...), published twice on one GCS API server
(gcp-storage-emulator, in memory): once with modelsync's manifest and no signature,
once signed in OMS format (`publish --sign-key` with a P-256 key: files, then
model.sig). Each is synced --runs times into a fresh store by `modelsync sync`
(a child process, as a user runs it), alternating, and the medians compared; the
OMS config names the public key, so the OMS sync reads and verifies model.sig and
lists the revision before downloading. Also measured in this process: verifying
the bundle alone (modelsync.oms.verify), the first call including the import of
model-signing, which every sync that verifies a model.sig pays once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.download.datasets import SMALL_FILES
from bench.measure import MB, random_tree
from tests.gcs_emulator import start as start_emulator

BUCKET = "bench"


def _create_bucket(endpoint: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project=bench",
        data=json.dumps({"name": BUCKET}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request):
        pass


def _publish(endpoint: str, src: Path, model: str, *sign: str) -> None:
    argv = [sys.executable, "-m", "modelsync", "publish", str(src), f"gs://{BUCKET}/{model}"]
    argv += ["--version", "1", "--source-option", f"endpoint={endpoint}", *sign]
    subprocess.run(argv, check=True, capture_output=True, env=_env(endpoint))


def _env(endpoint: str) -> dict[str, str]:
    return {**os.environ, "STORAGE_EMULATOR_HOST": endpoint, "MODELSYNC_LOG_FORMAT": "json"}


def _sync(endpoint: str, work: Path, model: str, verify: str) -> float:
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(work / ".modelsync-store", ignore_errors=True)
    config = work / f"{model}.toml"
    config.write_text(
        f'store = "{store}"\n[[models]]\nname = "{model}"\n'
        f'source = "gs://{BUCKET}/{model}"\n{verify}'
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "modelsync", "sync", "--config", str(config)],
        capture_output=True,
        text=True,
        env=_env(endpoint),
        check=False,
    )
    elapsed = time.monotonic() - started
    if out.returncode != 0 or not (store / model / "1").is_dir():
        raise SystemExit(f"sync of {model} failed ({out.returncode}): {out.stderr[-2000:]}")
    return elapsed


def _bundle_seconds(bundle: bytes, key: Path, subject: str) -> tuple[float, float]:
    """Seconds of the first verify() (with the import of model-signing) and of a later one."""
    from modelsync.oms import verify

    times = []
    for _ in range(2):
        started = time.monotonic()
        verify(bundle, "bench", keys=[key], subject=subject)
        times.append(time.monotonic() - started)
    return times[0], times[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shard-mb", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from modelsync.signing import generate_keypair

    files = {
        **{f"model-{i:05d}-of-00003.safetensors": args.shard_mb * MB for i in range(1, 4)},
        **SMALL_FILES,
    }
    total = sum(files.values())
    proc, endpoint = start_emulator()
    try:
        with tempfile.TemporaryDirectory(prefix="oms-bench-") as tmp:
            work = Path(tmp)
            _create_bucket(endpoint)
            key, pub = work / "p256.pem", work / "p256.pub"
            generate_keypair(key, pub, "p256")
            src = work / "src"
            random_tree(src, files, "oms-bench")
            _publish(endpoint, src, "plain")
            _publish(endpoint, src, "signed", "--sign-key", str(key))
            shutil.rmtree(src)
            oms = f'[models.verify]\noms_keys = ["{pub}"]\nrequire_signature = true\n'
            plain, signed = [], []
            for _ in range(args.runs):
                plain.append(_sync(endpoint, work, "plain", ""))
                signed.append(_sync(endpoint, work, "signed", oms))
            bundle = (work / "store" / "signed" / "1" / "model.sig").read_bytes()
            first, later = _bundle_seconds(bundle, pub, "signed-1")
    finally:
        proc.terminate()
        proc.wait()
    a, b = statistics.median(plain), statistics.median(signed)
    print(
        f"revision: 3 x {args.shard_mb} MB + {len(SMALL_FILES)} files = {total / MB:,.0f} MB; "
        f"{args.runs} runs each, medians"
    )
    print(f"| sync, manifest, unsigned | {a:.2f} s | runs {', '.join(f'{x:.2f}' for x in plain)}")
    print(f"| sync, OMS model.sig      | {b:.2f} s | runs {', '.join(f'{x:.2f}' for x in signed)}")
    print(f"| overhead                 | {b - a:+.2f} s | {100 * (b - a) / a:+.1f} % of the sync")
    print(
        f"| verify model.sig alone   | {first:.3f} s first (import of model-signing included), "
        f"{later * 1000:.1f} ms after |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
