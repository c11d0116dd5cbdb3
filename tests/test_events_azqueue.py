"""Azure Event Grid `BlobCreated` events in a Storage Queue (Azurite's Queue service;
messages laid out as Event Grid delivers them, in both of its schemas) wake a real
`modelsync run`; parse() reads both schemas and refuses what is not one."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelsync.events.azqueue import parse
from tests.daemonproc import DaemonProcess
from tests.emulators import (
    AZURITE_ACCOUNT,
    azurite_connection_string,
    azurite_queue_connection_string,
    start_azurite_queue,
    stop,
)
from tests.helpers import model_files, run_cli, write_tree

TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    f"Microsoft.Storage/storageAccounts/{AZURITE_ACCOUNT}"
)


@pytest.fixture(scope="module")
def azurite_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's Queue service on a free loopback port; its endpoint URL."""
    proc, url = start_azurite_queue(tmp_path_factory.mktemp("azurite-queue"))
    yield url
    stop(proc)


def _event_grid(container: str, blob: str, event_id: str) -> dict[str, Any]:
    """A BlobCreated event in Event Grid's own schema, as documented by Azure."""
    return {
        "topic": TOPIC,
        "subject": f"/blobServices/default/containers/{container}/blobs/{blob}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-12-05T08:00:00.1234567Z",
        "id": event_id,
        "data": {
            "api": "PutBlob",
            "clientRequestId": event_id,
            "requestId": event_id,
            "eTag": "0x8D4BCC2E4835CD0",
            "contentType": "application/json",
            "contentLength": 524,
            "blobType": "BlockBlob",
            "url": f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/{container}/{blob}",
            "sequencer": "00000000000004420000000000028963",
            "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def _cloud_event(container: str, blob: str, event_id: str) -> dict[str, Any]:
    """The same event in the CloudEvents 1.0 schema Event Grid can deliver instead."""
    doc = _event_grid(container, blob, event_id)
    return {
        "specversion": "1.0",
        "type": doc["eventType"],
        "source": doc["topic"],
        "subject": doc["subject"],
        "id": event_id,
        "time": doc["eventTime"],
        "data": doc["data"],
    }


def _queued(doc: dict[str, Any]) -> str:
    """What Event Grid writes to a Storage Queue: the event's JSON, base64-encoded."""
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_parse_reads_both_schemas_and_refuses_others() -> None:
    """Event Grid and CloudEvents BlobCreated events (base64 or plain) name the blob;
    other event types name nothing; what is not an event is malformed."""
    for doc in (_event_grid("c", "m/1/x", "a"), _cloud_event("c", "m/1/x", "a")):
        (event,) = parse(_queued(doc).encode())
        assert (event.bucket, event.key) == (f"{AZURITE_ACCOUNT}/c", "m/1/x")
        assert event.time is not None
        assert parse(json.dumps([doc]).encode())[0].key == "m/1/x"
    deleted = {**_event_grid("c", "m/1/x", "a"), "eventType": "Microsoft.Storage.BlobDeleted"}
    assert parse(json.dumps(deleted).encode()) == []
    for bad in (b"not base64 !", b"{}", b'{"eventType": "Microsoft.Storage.BlobCreated"}'):
        with pytest.raises(ValueError):
            parse(bad)


class Setup:
    def __init__(self, blob_endpoint: str, queue_endpoint: str, tmp: Path) -> None:
        from azure.storage.blob import BlobServiceClient
        from azure.storage.queue import QueueClient

        self.container = "c-" + uuid.uuid4().hex[:10]
        self.blob_secret = azurite_connection_string(blob_endpoint)
        self.queue_secret = azurite_queue_connection_string(queue_endpoint)
        BlobServiceClient.from_connection_string(self.blob_secret).create_container(self.container)
        self.queue_name = "q-" + uuid.uuid4().hex[:10]
        self.queue = QueueClient.from_connection_string(self.queue_secret, self.queue_name)
        self.queue.create_queue()
        self.tmp = tmp

    @property
    def url(self) -> str:
        return f"az://{AZURITE_ACCOUNT}/{self.container}/models/ranker"

    def publish(self, version: int) -> None:
        src = write_tree(self.tmp / f"src-{version}", model_files(version, 2048))
        done = run_cli(
            "publish",
            str(src),
            self.url,
            "--version",
            str(version),
            "--source-option",
            f"connection_string={self.blob_secret}",
        )
        assert done.returncode == 0, done.stderr

    def announce(self, version: int, cloud_events: bool = False) -> None:
        """What Event Grid would enqueue for the revision's blobs (all of them)."""
        for name in ("a.bin", "modelsync-manifest.json"):
            blob = f"models/ranker/{version}/{name}"
            make = _cloud_event if cloud_events else _event_grid
            self.queue.send_message(_queued(make(self.container, blob, uuid.uuid4().hex)))

    def config(self) -> Path:
        store = self.tmp / "store"
        store.mkdir()
        path = self.tmp / "modelsync.toml"
        path.write_text(
            f'store = "{store}"\ninterval = "1h"\nidentity = "az-host"\n\n'
            f'[[models]]\nname = "ranker"\nsource = "{self.url}"\n'
            f"source_options = {{ connection_string = {json.dumps(self.blob_secret)} }}\n\n"
            '[[events]]\nkind = "azure-queue"\nmodels = ["ranker"]\n'
            f"options = {{ queue = {json.dumps(self.queue_name)}, "
            f'connection_string = {json.dumps(self.queue_secret)}, wait = "1s" }}\n'
        )
        return path


def _served(proc: DaemonProcess) -> int | None:
    _, body = proc.http("GET", "/status")
    version: int | None = json.loads(body)["models"][0]["active_version"]
    return version


def _wait_served(proc: DaemonProcess, version: int, timeout: float) -> float:
    start = time.monotonic()
    while _served(proc) != version:
        assert time.monotonic() - start < timeout, proc.log_path.read_text()[-3000:]
        time.sleep(0.05)
    return time.monotonic() - start


def test_event_grid_messages_wake_a_pass_and_a_lost_queue_recovers(
    azurite: str, azurite_queue: str, tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """With interval = 1h, a publish announced by Event Grid (either schema) is served
    within 5 s; the queue deleted is reported as degraded (ready stays 200), and once
    it is back the host wakes on events again."""
    setup = Setup(azurite, azurite_queue, tmp_path)
    setup.publish(1)
    proc = DaemonProcess(["--config", str(setup.config())], tmp_path / "az.log")
    procs.append(proc)
    proc.wait_http()
    proc.wait_for(lambda e: e.get("event") == "first pass done; ready", timeout=30)
    for version, cloud in ((2, False), (3, True)):
        setup.publish(version)
        setup.announce(version, cloud_events=cloud)
        took = _wait_served(proc, version, timeout=5)
        print(
            f"\nazure-queue ({'CloudEvents' if cloud else 'Event Grid'} schema): "
            f"announced -> served {took:.2f} s"
        )
    setup.queue.delete_queue()
    proc.wait_for(lambda e: e.get("event") == "event source failing; polling covers", timeout=10)
    status, body = proc.http("GET", "/readyz")
    assert status == 200 and json.loads(body)["degraded"]
    setup.queue.create_queue()
    proc.wait_for(lambda e: e.get("event") == "event source recovered", timeout=70)
    setup.publish(4)
    setup.announce(4)
    _wait_served(proc, 4, timeout=5)
