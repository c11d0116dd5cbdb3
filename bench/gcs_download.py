"""Download the same revisions from a GCS API server with modelsync and with peers.

    python -m bench.gcs_download            (or: make bench)

Starts gcp-storage-emulator (threaded, as the tests do) on loopback, publishes
two revisions (200 files of 1 MB; one 512 MB file), then downloads each with
modelsync (`modelsync sync` in a child process), rclone, gcsfs and a plain
parallel HTTP GET, and prints MB/s side by side with each tool's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.gcs_emulator import start as start_emulator

MB = 1_000_000


@dataclass
class Row:
    dataset: str
    tool: str
    seconds: float | None
    mbytes: float
    rss_mb: float | None
    note: str = ""

    def line(self) -> str:
        rate = f"{self.mbytes / self.seconds:8.1f}" if self.seconds else "       -"
        secs = f"{self.seconds:7.2f}" if self.seconds else "      -"
        rss = f"{self.rss_mb:7.0f}" if self.rss_mb else "      -"
        return f"| {self.dataset:<14} | {self.tool:<22} | {secs} | {rate} | {rss} | {self.note}"


def print_table(rows: list[Row]) -> None:
    print("\n| dataset        | tool                   | seconds |     MB/s | RSS MB  | notes")
    print("|----------------|------------------------|---------|----------|---------|------")
    for row in rows:
        print(row.line())


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process: its own peak, reset at exec (unlike wait4's ru_maxrss,
    which carries the forking parent's peak across exec)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB, sampled every 20 ms) and exit code of a child process."""
    started = time.monotonic()
    peak = 0.0
    with subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        while proc.poll() is None:
            peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        assert proc.stderr is not None
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    return elapsed, peak, proc.returncode


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def random_tree(root: Path, files: dict[str, int], seed: str) -> Path:
    """Files of the given sizes under ``root``, random bytes seeded by ``seed``."""
    rng = random.Random(seed)
    for name, size in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            left = size
            while left:
                step = min(left, 8 * 1024 * 1024)
                handle.write(rng.randbytes(step))
                left -= step
    return root


def publish(endpoint: str, bucket: str, model: str, files: dict[str, int], work: Path) -> None:
    from modelsync.backends.gs import GcsOptions, GcsSource
    from modelsync.publish import publish as do_publish

    src = random_tree(work / "src" / model, files, model)
    do_publish(
        src,
        f"gs://{bucket}/{model}",
        version=1,
        sources=lambda url, _options: GcsSource(url, GcsOptions(endpoint=endpoint)),
    )
    shutil.rmtree(src)


def plain_http(endpoint: str, bucket: str, names: list[str], dest: Path, workers: int) -> None:
    """The floor: parallel GETs (and ranges for big objects) with no checks at all."""

    def media(name: str) -> str:
        quoted = urllib.parse.quote(name, safe="")
        return f"{endpoint}/download/storage/v1/b/{bucket}/o/{quoted}?alt=media"

    def get(name: str, start: int | None = None, end: int | None = None) -> None:
        request = urllib.request.Request(media(name))
        if start is not None:
            request.add_header("Range", f"bytes={start}-{end}")
        out = dest / name.split("/", 2)[-1]
        out.parent.mkdir(parents=True, exist_ok=True)
        mode = "r+b" if start is not None else "wb"
        with urllib.request.urlopen(request) as response, out.open(mode) as handle:
            if start is not None:
                handle.seek(start)
            while chunk := response.read(1024 * 1024):
                handle.write(chunk)

    jobs: list[tuple[str, int | None, int | None]] = []
    for name in names:
        head = urllib.request.Request(
            f"{endpoint}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}"
        )
        import json

        with urllib.request.urlopen(head) as response:
            size = int(json.loads(response.read())["size"])
        if size >= 64 * 1024 * 1024:
            out = dest / name.split("/", 2)[-1]
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("wb") as handle:
                handle.truncate(size)
            step = 16 * 1024 * 1024
            jobs += [(name, s, min(s + step, size) - 1) for s in range(0, size, step)]
        else:
            jobs.append((name, None, None))
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(get, *job) for job in jobs]:
            future.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--file-mb", type=int, default=1)
    parser.add_argument("--large-mb", type=int, default=512)
    parser.add_argument("--only", choices=["many", "large"], default=None)
    args = parser.parse_args()
    os.environ["DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"] = "true"
    emulator, endpoint = start_emulator()
    work = Path(tempfile.mkdtemp(prefix="modelsync-bench-"))
    bucket = "bench"
    rows: list[Row] = []
    try:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="bench",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
        client.create_bucket(bucket)
        datasets = {
            f"{args.files} x {args.file_mb} MB": (
                "many",
                {f"variables/shard-{i:04d}": args.file_mb * MB for i in range(args.files)},
            ),
            f"1 x {args.large_mb} MB": ("large", {"variables/data": args.large_mb * MB}),
        }
        for label, (model, files) in datasets.items():
            if args.only and model != args.only:
                continue
            print(f"publishing {label} ...", file=sys.stderr, flush=True)
            publish(endpoint, bucket, model, files, work)
            names = [f"{model}/1/{n}" for n in files]
            total = sum(files.values()) / MB
            env = {
                **os.environ,
                "STORAGE_EMULATOR_HOST": endpoint,
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            }

            def fresh(tool: str, model: str = model) -> Path:
                path = work / "out" / tool / model
                shutil.rmtree(path.parent, ignore_errors=True)
                path.mkdir(parents=True)
                return path

            dest = fresh("modelsync")
            secs, rss, code = run_measured(
                [
                    sys.executable,
                    "-m",
                    "modelsync",
                    "sync",
                    "--store",
                    str(dest),
                    "--model",
                    model,
                    "--source",
                    f"gs://{bucket}/{model}",
                ],
                env,
            )
            got = dir_bytes(dest / model / "1") / MB if code == 0 else 0
            rows.append(
                Row(
                    label,
                    "modelsync (verified)",
                    secs if code == 0 else None,
                    total,
                    rss,
                    "crc32c + sha256" if got >= total else f"FAILED exit {code}",
                )
            )

            rclone = shutil.which("rclone")
            if rclone:
                dest = fresh("rclone")
                remote = f":gcs,endpoint='{endpoint}',anonymous=true:{bucket}/{model}/1"
                secs, rss, code = run_measured(
                    [
                        rclone,
                        "copy",
                        remote,
                        str(dest),
                        "--transfers",
                        "8",
                        "--multi-thread-streams",
                        "4",
                    ],
                    env,
                )
                ok = code == 0 and dir_bytes(dest) / MB >= total
                rows.append(
                    Row(
                        label,
                        "rclone",
                        secs if ok else None,
                        total,
                        rss,
                        "md5" if ok else f"FAILED exit {code}",
                    )
                )
            else:
                rows.append(Row(label, "rclone", None, total, None, "not installed"))

            dest = fresh("gcsfs")
            script = (
                "import sys, gcsfs\n"
                f"fs = gcsfs.GCSFileSystem(endpoint_url={endpoint!r}, token='anon')\n"
                f"fs.get({bucket + '/' + model + '/1/'!r}, {str(dest) + '/'!r}, recursive=True)\n"
            )
            secs, rss, code = run_measured([sys.executable, "-c", script], env)
            ok = code == 0 and dir_bytes(dest) / MB >= total
            rows.append(
                Row(
                    label,
                    "gcsfs",
                    secs if ok else None,
                    total,
                    rss,
                    "no checks" if ok else f"not available (exit {code})",
                )
            )

            dest = fresh("http")
            started = time.monotonic()
            plain_http(endpoint, bucket, names, dest, workers=8)
            secs = time.monotonic() - started
            ok = dir_bytes(dest) / MB >= total
            rows.append(
                Row(
                    label,
                    "plain parallel GET",
                    secs if ok else None,
                    total,
                    None,
                    "no checks, in-process" if ok else "FAILED",
                )
            )
            client.bucket(bucket).delete_blobs(list(client.list_blobs(bucket, prefix=f"{model}/")))
    finally:
        emulator.terminate()
        emulator.wait()
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
