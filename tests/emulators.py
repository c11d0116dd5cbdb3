"""Storage API servers for the contract suite, each a child process on a free
loopback port: moto's S3 server (and Azurite, from npm). gcp-storage-emulator has
its own launcher (tests/gcs_emulator.py) because it needs a patch."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent


def _started(
    argv: Sequence[str], url: str, name: str, timeout: float = 60
) -> subprocess.Popen[bytes]:
    # stderr to a file, so that a server that does not start says why (the child
    # keeps its own descriptor of the unlinked file once this one closes).
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return proc
            except urllib.error.HTTPError:
                return proc  # it answers (with an error for an anonymous GET): it is up
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    proc.wait()
                    log.seek(0)
                    said = log.read().decode(errors="replace").strip().splitlines()[-5:]
                    raise RuntimeError(
                        f"{name} did not start: {' '.join(argv)}: {' | '.join(said)}"
                    ) from None
                time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 API server (``moto[server]``); (process, endpoint URL)."""
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    return _started(argv, url + "/moto-api/", "moto"), url


# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_BIN = REPO / ".emulators" / "node_modules" / ".bin" / "azurite-blob"


def azurite_connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};"
    )


def start_azurite(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Azurite's Blob service (npm, installed by `make emulators`); (process, endpoint)."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"{AZURITE_BIN} is missing: run `make emulators`")
    port = free_port()
    argv = [
        str(AZURITE_BIN),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(workdir),
        "--silent",
        "--skipApiVersionCheck",
        "--loose",
    ]
    url = f"http://127.0.0.1:{port}"
    return _started(argv, f"{url}/{AZURITE_ACCOUNT}?comp=list", "azurite"), url


AZURITE_QUEUE_BIN = REPO / ".emulators" / "node_modules" / ".bin" / "azurite-queue"


def azurite_queue_connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};QueueEndpoint={endpoint}/{AZURITE_ACCOUNT};"
    )


def start_azurite_queue(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Azurite's Queue service (the same npm package); (process, endpoint)."""
    if not AZURITE_QUEUE_BIN.exists():
        raise RuntimeError(f"{AZURITE_QUEUE_BIN} is missing: run `make emulators`")
    port = free_port()
    argv = [
        str(AZURITE_QUEUE_BIN),
        "--queueHost",
        "127.0.0.1",
        "--queuePort",
        str(port),
        "--location",
        str(workdir),
        "--silent",
        "--skipApiVersionCheck",
        "--loose",
    ]
    url = f"http://127.0.0.1:{port}"
    return _started(argv, f"{url}/{AZURITE_ACCOUNT}?comp=list", "azurite-queue"), url


# Google's Pub/Sub emulator (Debian package google-cloud-cli-pubsub-emulator, from
# Google's apt repository: on this project's machines, not installable by .ci/run).
PUBSUB_EMULATOR = Path(
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
)


def start_pubsub(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The Pub/Sub emulator (Java); (process, host:port for PUBSUB_EMULATOR_HOST)."""
    port = free_port()
    argv = [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}", f"--dir={workdir}"]
    proc = _started(argv, f"http://127.0.0.1:{port}/", "pubsub emulator")
    return proc, f"127.0.0.1:{port}"
