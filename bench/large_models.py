"""Large models: modelsync beside rclone, gcsfs and KServe's storage initializer, and
beside the two physical limits, all measured in one run on one GCS API server.

    python -m bench.large_models            (or: make bench)

Datasets: (a) an LLM-shaped revision, 3 shards of --shard-mb MB plus 20 small files
(config, tokenizer...); (b) 1,000 x 100 KB; (c) 200 x 1 MB; (d) a new revision of
(a) with one shard changed, synced where (a) is. Every tool runs as a child process
(wall time, peak RSS sampled every 20 ms): modelsync (`modelsync sync`, and its
download phase from its own log), rclone, gcsfs, KServe's storage initializer
(kserve-storage's Storage.download, the code of KServe's init container; gcsfs and
kserve-storage run from their own virtualenv, --peers-python). The limits: a
parallel raw GET of the same bytes to /dev/null (8 threads, 16 MiB ranges for
large objects, no checks), and a durable write of as many bytes (dd conv=fdatasync).

The server is gcp-storage-emulator (threaded, in memory) on two cores shared with
every client: it is the ceiling of every row, the raw GET included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import MB, dir_bytes, random_tree, run_measured
from tests.gcs_emulator import start as start_emulator

BUCKET = "bench"
RANGE = 16 * 1024 * 1024
TOOLS = ("rclone", "gcsfs", "KServe storage initializer")
SMALL_FILES = {
    "config.json": 1_200,
    "generation_config.json": 300,
    "tokenizer.json": 2_100_000,
    "tokenizer_config.json": 50_000,
    "special_tokens_map.json": 600,
    "vocab.json": 1_000_000,
    "merges.txt": 500_000,
    "model.safetensors.index.json": 25_000,
    "README.md": 8_000,
    "LICENSE": 11_000,
    **{f"extra/eval-{i:02d}.json": 4_000 + i for i in range(10)},
}


@dataclass
class Result:
    dataset: str
    tool: str
    seconds: float | None
    mbytes: float  # the revision's size
    rss_mb: float | None = None
    fetched_mb: float | None = None
    note: str = ""


@dataclass
class Dataset:
    label: str
    model: str
    version: int
    files: dict[str, int]
    # Bytes that must cross the network (all of them, except for (d)).
    must_fetch: int
    # Synced into the store (and peers' directories) of this dataset's first version.
    update_of: str | None = None

    @property
    def total(self) -> int:
        return sum(self.files.values())


def datasets(shard_mb: int) -> list[Dataset]:
    shard = shard_mb * MB
    shards = {f"model-{i:05d}-of-00003.safetensors": shard for i in range(1, 4)}
    llm = {**shards, **SMALL_FILES}
    total = sum(llm.values())
    return [
        Dataset(f"(a) 3 x {shard_mb} MB + 20", "llm", 1, llm, total),
        Dataset("(d) (a), 1 shard new", "llm", 2, llm, shard, update_of="(a)"),
        Dataset("(b) 1000 x 100 KB", "k100", 1, {f"part-{i:04d}": 100_000 for i in range(1000)}, 0),
        Dataset("(c) 200 x 1 MB", "m1", 1, {f"variables/shard-{i:04d}": MB for i in range(200)}, 0),
    ]


def publish(endpoint: str, data: Dataset, work: Path, changed: str | None = None) -> None:
    from modelsync.backends.gs import GcsOptions, GcsSource
    from modelsync.publish import publish as do_publish
    from modelsync.retry import RetryPolicy

    # Same seed for every file but the changed one: (d) shares all but one shard with (a).
    src = work / "src" / data.model
    shutil.rmtree(src, ignore_errors=True)
    for name, size in data.files.items():
        seed = f"{data.model}-{name}-{2 if name == changed else 1}"
        random_tree(src, {name: size}, seed)
    do_publish(
        src,
        f"gs://{BUCKET}/{data.model}",
        version=data.version,
        sources=lambda url, _options: GcsSource(url, GcsOptions(endpoint=endpoint)),
        # The emulator drops a connection now and then under parallel uploads.
        concurrency=4,
        retry=RetryPolicy(attempts=30, initial=0.1, maximum=2.0, total=600),
    )
    shutil.rmtree(src)


def raw_get(endpoint: str, names: list[str], workers: int = 8) -> None:
    """The network limit: parallel GETs (16 MiB ranges for large objects) into /dev/null."""

    def media(name: str) -> str:
        quoted = urllib.parse.quote(name, safe="")
        return f"{endpoint}/download/storage/v1/b/{BUCKET}/o/{quoted}?alt=media"

    def get(name: str, start: int | None, end: int | None) -> None:
        request = urllib.request.Request(media(name))
        if start is not None:
            request.add_header("Range", f"bytes={start}-{end}")
        with urllib.request.urlopen(request) as response:
            while response.read(1024 * 1024):
                pass

    jobs: list[tuple[str, int | None, int | None]] = []
    for name in names:
        meta = f"{endpoint}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}"
        with urllib.request.urlopen(meta) as response:
            size = int(json.loads(response.read())["size"])
        if size >= 64 * 1024 * 1024:
            jobs += [(name, s, min(s + RANGE, size) - 1) for s in range(0, size, RANGE)]
        else:
            jobs.append((name, None, None))
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(get, *job) for job in jobs]:
            future.result()


def durable_write(path: Path, size: int) -> float:
    """Seconds for dd to write ``size`` bytes and fdatasync them."""
    count = max(1, -(-size // (4 * 1024 * 1024)))
    started = time.monotonic()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", "bs=4M", f"count={count}", "conv=fdatasync"],
        check=True,
        capture_output=True,
    )
    elapsed = time.monotonic() - started
    path.unlink()
    return elapsed


def _sync_command(
    endpoint: str, data: Dataset, store: Path, config: Path
) -> tuple[list[str], dict[str, str]]:
    """`modelsync sync` of ``data``'s model into ``store`` (a config file, JSON logs)."""
    config.write_text(
        f'store = "{store}"\n\n[[models]]\nname = "{data.model}"\n'
        f'source = "gs://{BUCKET}/{data.model}"\n'
    )
    env = {**os.environ, "STORAGE_EMULATOR_HOST": endpoint, "MODELSYNC_LOG_FORMAT": "json"}
    return [sys.executable, "-m", "modelsync", "sync", "--config", str(config)], env


def _downloaded(log: Path) -> list[dict[str, Any]]:
    """The "downloaded and verified" events of a JSON log."""
    events = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return [e for e in events if e.get("event") == "downloaded and verified"]


def modelsync_sync(endpoint: str, data: Dataset, store: Path, work: Path) -> tuple[Result, Result]:
    """`modelsync sync` as a user runs it; the download phase from its JSON log."""
    argv, env = _sync_command(endpoint, data, store, work / f"{data.model}.toml")
    log = work / "modelsync.log"
    secs, rss, code = run_measured(argv, env, stderr_to=log)
    done = _downloaded(log)
    served = store / data.model / str(data.version)
    ok = code == 0 and done and dir_bytes(served) >= data.total
    if not ok:
        note = f"FAILED exit {code}"
        return Result(data.label, "modelsync", None, data.total / MB, rss, note=note), Result(
            data.label, "modelsync, download phase", None, data.total / MB, note=note
        )
    fetched = done[0]["fetched_bytes"] / MB
    whole = Result(data.label, "modelsync", secs, data.total / MB, rss, fetched, "sha256 + crc32c")
    phase = Result(
        data.label, "modelsync, download phase", done[0]["seconds"], data.total / MB, None, fetched
    )
    return whole, phase


def modelsync_resume(
    endpoint: str, data: Dataset, store: Path, work: Path, share: float = 0.9
) -> Result:
    """`modelsync sync` killed with SIGKILL once ``share`` of the revision is on disk,
    then run again: how much the second run fetches."""
    argv, env = _sync_command(endpoint, data, store, work / f"{data.model}-resume.toml")
    partial = store.parent / f".modelsync-{store.name}" / "partial" / data.model
    label = f"(e) (a) after kill -9 at {share:.0%}"
    with subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL) as proc:
        on_disk = 0
        while proc.poll() is None and on_disk < share * data.total:
            on_disk = sum(p.stat().st_blocks * 512 for p in partial.glob("*") if p.is_file())
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    log = work / "resume.log"
    secs, rss, code = run_measured(argv, env, stderr_to=log)
    done = _downloaded(log)
    if code != 0 or not done:
        return Result(label, "modelsync", None, data.total / MB, rss, note=f"FAILED exit {code}")
    fetched = done[0]["fetched_bytes"]
    note = (
        f"killed with {on_disk / data.total:.0%} on disk; the second run fetched "
        f"{fetched / data.total:.1%} of the revision"
    )
    return Result(label, "modelsync", secs, data.total / MB, rss, fetched / MB, note)


def peer(tool: str, endpoint: str, data: Dataset, dest: Path, peers_python: Path | None) -> Result:
    env = {**os.environ, "STORAGE_EMULATOR_HOST": endpoint}
    prefix = f"{BUCKET}/{data.model}/{data.version}"
    checks = {"rclone": "md5", "gcsfs": "no checks", TOOLS[2]: "no checks"}[tool]
    if tool == "rclone":
        rclone = shutil.which("rclone")
        if rclone is None:
            return Result(data.label, tool, None, data.total / MB, note="not installed")
        # --checksum: an update skips files whose md5 it already has, as (d) allows.
        argv = [
            rclone,
            "copy",
            f":gcs,endpoint='{endpoint}',anonymous=true:{prefix}",
            str(dest),
            "--transfers",
            "8",
            "--multi-thread-streams",
            "4",
            "--checksum",
        ]
    elif peers_python is None or not peers_python.exists():
        return Result(data.label, tool, None, data.total / MB, note="peers venv missing")
    elif tool == "gcsfs":
        script = (
            "import sys, gcsfs\n"
            "fs = gcsfs.GCSFileSystem(endpoint_url=sys.argv[1], token='anon')\n"
            "fs.get(sys.argv[2] + '/', sys.argv[3] + '/', recursive=True)\n"
        )
        argv = [str(peers_python), "-c", script, endpoint, prefix, str(dest)]
        env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    else:
        script = (
            "import sys\n"
            "from kserve_storage import Storage\n"
            "Storage.download(sys.argv[1], sys.argv[2])\n"
        )
        argv = [str(peers_python), "-c", script, f"gs://{prefix}", str(dest)]
    dest.mkdir(parents=True, exist_ok=True)
    secs, rss, code = run_measured(argv, env)
    ok = code == 0 and dir_bytes(dest) >= data.total
    fetched = data.total / MB if data.update_of is None or tool != "rclone" else None
    return Result(
        data.label,
        tool,
        secs if ok else None,
        data.total / MB,
        rss,
        fetched,
        checks if ok else f"FAILED exit {code}",
    )


def measure_version_and_noop(work: Path, runs: int = 5) -> dict[str, float]:
    """Median wall seconds of `modelsync --version` and of a no-op file:// sync."""
    bucket, store = work / "noop-bucket" / "m", work / "noop-store"
    random_tree(work / "noop-src", {"model.bin": 1000, "variables/data": MB}, "noop")
    argv = [sys.executable, "-m", "modelsync"]
    subprocess.run(
        [*argv, "publish", str(work / "noop-src"), f"file://{bucket}", "--version", "1"],
        check=True,
        capture_output=True,
    )
    sync = [*argv, "sync", "--store", str(store), "--model", "m", "--source", f"file://{bucket}"]
    subprocess.run(sync, check=True, capture_output=True)
    timings: dict[str, list[float]] = {"version": [], "noop": []}
    for _ in range(runs):
        for key, command in (("version", [*argv, "--version"]), ("noop", sync)):
            started = time.monotonic()
            subprocess.run(command, check=True, capture_output=True)
            timings[key].append(time.monotonic() - started)
    return {key: statistics.median(values) for key, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard-mb", type=int, default=1000)
    parser.add_argument("--peers-python", type=Path, default=Path(".bench-peers/bin/python"))
    parser.add_argument("--only", default=None, help="run only datasets whose label has this")
    args = parser.parse_args()
    os.environ["DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"] = "true"
    work = Path(tempfile.mkdtemp(prefix="modelsync-bench-", dir=os.environ.get("BENCH_DIR")))
    emulator, endpoint = start_emulator()
    results: list[Result] = []
    limits: dict[str, tuple[float, float]] = {}
    must_fetch: dict[str, int] = {}
    try:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="bench",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
        client.create_bucket(BUCKET)
        for data in datasets(args.shard_mb):
            if args.only and args.only not in data.label:
                continue
            changed = "model-00002-of-00003.safetensors" if data.update_of else None
            print(f"{data.label}: publishing ...", file=sys.stderr, flush=True)
            publish(endpoint, data, work, changed)
            must = must_fetch[data.label] = data.must_fetch or data.total
            names = [f"{data.model}/{data.version}/{n}" for n in data.files]
            fetch_names = [n for n in names if changed is None or n.endswith(changed)]
            print(f"{data.label}: measuring ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            raw_get(endpoint, fetch_names)
            limits[data.label] = (time.monotonic() - started, durable_write(work / "dd", must))
            store = work / "out" / "modelsync" / data.model
            results += modelsync_sync(endpoint, data, store, work)
            if data.update_of is None and data.model == "llm":
                resumed = modelsync_resume(endpoint, data, work / "out" / "resume" / "llm", work)
                results.append(resumed)
                limits[resumed.dataset] = limits[data.label]
                must_fetch[resumed.dataset] = must
            for tool in TOOLS:
                dest = work / "out" / tool / data.model
                if data.update_of is None or tool != "rclone":
                    shutil.rmtree(dest, ignore_errors=True)
                results.append(peer(tool, endpoint, data, dest, args.peers_python))
            if data.update_of is not None or data.model != "llm":
                # Done with these objects: the emulator keeps them in memory.
                client.bucket(BUCKET).delete_blobs(
                    list(client.list_blobs(BUCKET, prefix=f"{data.model}/"))
                )
                shutil.rmtree(work / "out", ignore_errors=True)
        startup = measure_version_and_noop(work)
    finally:
        emulator.terminate()
        emulator.wait()
        shutil.rmtree(work, ignore_errors=True)
    print_report(results, limits, must_fetch, startup)


def print_report(
    results: list[Result],
    limits: dict[str, tuple[float, float]],
    must: dict[str, int],
    startup: dict[str, float],
) -> None:
    print(
        "\n| dataset | tool | seconds | MB/s | peak RSS MB | fetched MB "
        "| x fastest peer | x limit | notes |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for label, (get_s, dd_s) in limits.items():
        rows = [r for r in results if r.dataset == label]
        peers = [r.seconds for r in rows if r.tool in TOOLS and r.seconds]
        best = min(peers) if peers else None
        limit = max(get_s, dd_s)  # the lower of the two rates: the longer time
        for r in rows:
            cells = [
                f"{r.seconds:.2f}" if r.seconds else "-",
                f"{r.mbytes / r.seconds:.0f}" if r.seconds else "-",
                f"{r.rss_mb:.0f}" if r.rss_mb else "-",
                f"{r.fetched_mb:,.0f}" if r.fetched_mb is not None else "-",
                f"{best / r.seconds:.2f}" if best and r.seconds else "-",
                f"{limit / r.seconds:.2f}" if r.seconds else "-",
            ]
            print(f"| {label} | {r.tool} | " + " | ".join(cells) + f" | {r.note} |")
        mbytes = rows[0].mbytes if rows else 0.0
        moved = must[label] / MB
        print(
            f"| {label} | limit: raw parallel GET to /dev/null | {get_s:.2f} | "
            f"{moved / get_s:.0f} | - | {moved:,.0f} | - | {limit / get_s:.2f} | "
            f"no checks; {mbytes:,.0f} MB revision |"
        )
        print(
            f"| {label} | limit: dd conv=fdatasync | {dd_s:.2f} | {moved / dd_s:.0f} | - | "
            f"{moved:,.0f} | - | {limit / dd_s:.2f} | as many bytes, one file |"
        )
    print(
        f"\n`modelsync --version`: {startup['version']:.3f} s; no-op `modelsync sync` of a "
        f"file:// model: {startup['noop']:.3f} s (medians of 5)"
    )


if __name__ == "__main__":
    main()
