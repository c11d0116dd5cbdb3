"""One revision, every network backend: modelsync beside each store's own SDK.

    python -m bench.backends_download          (or: make bench, after the GCS table)

Starts gcp-storage-emulator, moto's S3 server and Azurite on loopback, publishes
the same revisions to each with `modelsync publish` (200 files of 1 MB; one file of
256 MB), then downloads each with `modelsync sync` (a child process: start,
listing, verified download, activation) and with the store's own SDK in a child
process (no checks): google-cloud-storage's transfer manager, boto3's
download_file (s3transfer), azure-storage-blob's download_blob with 8 connections.
The emulators are the servers here, and on two cores they are also the ceiling:
every row shares the machine with its emulator.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.measure import MB, Row, dir_bytes, print_table, random_tree, run_measured
from tests.backends import S3_ENV, AzureBackend, GcsBackend, NetworkBackend, S3Backend
from tests.emulators import start_azurite, start_moto, stop
from tests.gcs_emulator import start as start_gcs

# The store's SDK downloading the revision's objects to a directory, in a child.
PEERS = {
    "gs": (
        "google-cloud-storage transfer_manager",
        """
import sys
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage import transfer_manager
endpoint, bucket, prefix, dest = sys.argv[1:5]
client = storage.Client(project="b", credentials=AnonymousCredentials(),
                        client_options={"api_endpoint": endpoint})
blobs = [b.name for b in client.list_blobs(bucket, prefix=prefix)]
results = transfer_manager.download_many_to_path(
    client.bucket(bucket), blobs, destination_directory=dest, max_workers=8,
    worker_type=transfer_manager.THREAD)
assert not [r for r in results if isinstance(r, Exception)], results
""",
    ),
    "s3": (
        "boto3 download_file",
        """
import sys, os
from concurrent.futures import ThreadPoolExecutor
import boto3
endpoint, bucket, prefix, dest = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint)
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
def get(key):
    out = os.path.join(dest, key)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    s3.download_file(bucket, key, out)
with ThreadPoolExecutor(8) as pool:
    list(pool.map(get, keys))
""",
    ),
    "az": (
        "azure-storage-blob download_blob",
        """
import sys, os
from concurrent.futures import ThreadPoolExecutor
from azure.storage.blob import ContainerClient
secret, container, prefix, dest = sys.argv[1:5]
client = ContainerClient.from_connection_string(secret, container)
names = [b.name for b in client.list_blobs(name_starts_with=prefix)]
def get(name):
    out = os.path.join(dest, name)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as handle:
        client.download_blob(name, max_concurrency=8).readinto(handle)
with ThreadPoolExecutor(8) as pool:
    list(pool.map(get, names))
""",
    ),
}


def _peer_args(backend: NetworkBackend) -> list[str]:
    if isinstance(backend, GcsBackend):
        return [backend.endpoint, backend.bucket, backend.prefix]
    if isinstance(backend, S3Backend):
        return [backend.endpoint, backend.bucket, backend.prefix]
    assert isinstance(backend, AzureBackend)
    return [backend.options()["connection_string"], backend.container, backend.prefix]


def measure(backend: NetworkBackend, label: str, files: dict[str, int], work: Path) -> list[Row]:
    total = sum(files.values()) / MB
    env = {**os.environ, **backend.env()}
    src = random_tree(work / "src", files, label)
    published = subprocess.run(
        [sys.executable, "-m", "modelsync", "publish", str(src), backend.url, "--version", "1"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(src)
    if published.returncode != 0:
        return [
            Row(label, f"{backend.name}: modelsync", None, total, None, published.stderr[-200:])
        ]
    store = work / "data" / "models"
    argv = [sys.executable, "-m", "modelsync", "sync", "--store", str(store)]
    argv += ["--model", "ranker", "--source", backend.url]
    secs, rss, code = run_measured(argv, env)
    ok = code == 0 and dir_bytes(store / "ranker" / "1") / MB >= total
    # The store's own checksum, where the object has a whole-object one (a multipart
    # S3 upload has not: the manifest's sha256 alone checks it).
    checks = {"gs": "crc32c", "s3": "S3 checksum if whole-object", "az": "Content-MD5"}
    rows = [
        Row(
            label,
            f"{backend.name}: modelsync",
            secs if ok else None,
            total,
            rss,
            f"sha256 + {checks[backend.name]}; whole command" if ok else f"FAILED exit {code}",
        )
    ]
    shutil.rmtree(work / "data", ignore_errors=True)
    tool, script = PEERS[backend.name]
    dest = work / "peer"
    dest.mkdir()
    secs, rss, code = run_measured(
        [sys.executable, "-c", script, *_peer_args(backend), str(dest)], env
    )
    ok = code == 0 and dir_bytes(dest) / MB >= total
    rows.append(
        Row(label, f"{backend.name}: {tool}", secs if ok else None, total, rss, "no checks")
    )
    shutil.rmtree(dest)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--large-mb", type=int, default=256)
    args = parser.parse_args()
    os.environ.update(S3_ENV)
    work = Path(tempfile.mkdtemp(prefix="modelsync-bench-"))
    gcs, gcs_url = start_gcs()
    moto, moto_url = start_moto()
    azurite, azurite_url = start_azurite(work / "azurite")
    rows: list[Row] = []
    datasets = {
        f"{args.files} x 1 MB": {f"variables/shard-{i:04d}": MB for i in range(args.files)},
        f"1 x {args.large_mb} MB": {"variables/data": args.large_mb * MB},
    }
    try:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="bench",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": gcs_url},
        )
        for index, (label, files) in enumerate(datasets.items()):
            client.create_bucket(f"bench-{index}")
            backends: list[NetworkBackend] = [
                GcsBackend(gcs_url, f"bench-{index}"),
                S3Backend(moto_url, f"bench-{index}").create(),
                AzureBackend(azurite_url, f"bench-{index}").create(),
            ]
            for backend in backends:
                print(f"{backend.name}: {label} ...", file=sys.stderr, flush=True)
                rows += measure(backend, label, files, work / backend.name)
    finally:
        for proc in (gcs, moto, azurite):
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
