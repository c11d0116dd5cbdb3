"""The transfer engine alone: N GETs through ``Engine.get``, no files written.

    python -m bench.engine_gets [--tree DIR] [--objects 1000] [--size 100000] \
        [--threads 16] [--rounds 3]

Starts fake-gcs-server (Go, objects on disk, loopback), uploads ``--objects``
objects of ``--size`` random bytes, then per round GETs every one of them through
the engine of the modelsync in ``--tree`` (default: this checkout), from
``--threads`` threads, each body fed to sha256 as it arrives, and prints the wall
time, the process CPU (user + system) and how many pieces the engine handed to the
writer. What a `sync` adds on top (files, fsync, bookkeeping) is left out, so an
HTTP core can be judged by itself: docs/transport.md, "libcurl under the engine".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench.download.servers import BUCKET, start_gcs

# Run in a child (URLs on stdin), so that the modelsync of --tree is the one imported.
_CHILD = """
import hashlib, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from modelsync.transport.engine import Engine
urls, threads = sys.stdin.read().split(), int(sys.argv[1])
engine = Engine(max(threads, 4), 5, 30)
pieces = [0]
lock = threading.Lock()
def one(url):
    digest = hashlib.sha256()
    def write(block):
        with lock:
            pieces[0] += 1
        digest.update(block)
    engine.get(url, {"Accept-Encoding": "identity"}, write, None, url)
wall, cpu = time.monotonic(), time.process_time()
with ThreadPoolExecutor(threads) as pool:
    list(pool.map(one, urls))
print(f"{time.monotonic() - wall:.3f} {time.process_time() - cpu:.2f} {pieces[0]}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engine-gets-") as work:
        server = start_gcs(Path(work))
        try:
            urls = []
            for i in range(args.objects):
                key = f"o/{i:05d}"
                request = urllib.request.Request(
                    f"{server.endpoint}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={key}",
                    data=os.urandom(args.size),
                    method="POST",
                )
                urllib.request.urlopen(request, timeout=30).close()
                urls.append(server.object_url(key))
            env = {**os.environ, "PYTHONPATH": str(args.tree)}
            print(f"{args.objects} x {args.size:,} B, {args.threads} threads, tree {args.tree}")
            print("| round | seconds | CPU s | pieces written |\n|---:|---:|---:|---:|")
            for n in range(1, args.rounds + 1):
                done = subprocess.run(
                    [sys.executable, "-c", _CHILD, str(args.threads)],
                    input="\n".join(urls),
                    env=env,
                    # -c puts the working directory first on sys.path: the tree's.
                    cwd=args.tree,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                seconds, cpu, pieces = done.stdout.split()
                print(f"| {n} | {seconds} | {cpu} | {pieces} |")
        finally:
            server.close()


if __name__ == "__main__":
    main()
