"""GCS notifications through Pub/Sub (Google's emulator; messages laid out as GCS
publishes them, since the storage emulator publishes none) wake real `modelsync run`
processes, each on a subscription it creates at start and deletes at stop."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelsync.events.pubsub import parse
from tests.backends import GcsBackend
from tests.daemonproc import DaemonProcess
from tests.emulators import PUBSUB_EMULATOR, start_pubsub, stop
from tests.helpers import model_files, run_cli, write_tree

PROJECT = "modelsync-test"

needs_emulator = pytest.mark.skipif(
    not PUBSUB_EMULATOR.exists(),
    reason=f"{PUBSUB_EMULATOR} is missing (Debian package google-cloud-cli-pubsub-emulator)",
)


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The emulator's host:port."""
    proc, host = start_pubsub(tmp_path_factory.mktemp("pubsub"))
    yield host
    stop(proc)


def _attributes(bucket: str, key: str, generation: str) -> dict[str, str]:
    """The attributes GCS sets on an OBJECT_FINALIZE notification (its documented set)."""
    return {
        "notificationConfig": f"projects/_/buckets/{bucket}/notificationConfigs/1",
        "eventType": "OBJECT_FINALIZE",
        "payloadFormat": "JSON_API_V1",
        "bucketId": bucket,
        "objectId": key,
        "objectGeneration": generation,
        "eventTime": "2026-12-05T08:00:00.123456Z",
    }


def _message(attributes: dict[str, str]) -> bytes:
    return json.dumps({"attributes": attributes, "data": ""}).encode()


def test_parse_reads_finalize_notifications_only() -> None:
    """OBJECT_FINALIZE names its object; other GCS events name nothing; a message
    without GCS's attributes is malformed."""
    (event,) = parse(_message(_attributes("b", "m/1/modelsync-manifest.json", "7")))
    assert (event.bucket, event.key, event.identity) == ("b", "m/1/modelsync-manifest.json", "7")
    assert event.time is not None
    deleted = {**_attributes("b", "k", "1"), "eventType": "OBJECT_DELETE"}
    assert parse(_message(deleted)) == []
    for bad in (b"nope", b"{}", _message({"eventType": "OBJECT_FINALIZE"})):
        with pytest.raises(ValueError):
            parse(bad)


def _served(proc: DaemonProcess) -> int | None:
    _, body = proc.http("GET", "/status")
    version: int | None = json.loads(body)["models"][0]["active_version"]
    return version


@needs_emulator
def test_two_hosts_on_their_own_subscriptions_serve_an_announced_publish(
    gcs_emulator: str,
    gcs_bucket: str,
    pubsub: str,
    tmp_path: Path,
    procs: list[DaemonProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With interval = 1h and a topic, each host subscribes itself; a publish announced
    on the topic is served by both within 5 s; their subscriptions go at stop."""
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub)  # the clients' documented switch
    publisher = pubsub_v1.PublisherClient()
    topic = f"projects/{PROJECT}/topics/t-{uuid.uuid4().hex[:8]}"
    publisher.create_topic(request={"name": topic})
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    env = {**backend.env(), "PUBSUB_EMULATOR_HOST": pubsub}

    def publish(version: int) -> None:
        src = write_tree(tmp_path / f"src-{version}", model_files(version, 2048))
        done = run_cli("publish", str(src), backend.url, "--version", str(version), env=env)
        assert done.returncode == 0, done.stderr

    def announce(version: int) -> None:
        for name in ("a.bin", "modelsync-manifest.json"):
            key = f"{backend.prefix}/{version}/{name}"
            attrs = _attributes(gcs_bucket, key, str(time.time_ns()))
            publisher.publish(topic, b'{"kind": "storage#object"}', **attrs).result(10)

    publish(1)
    running = []
    for i in range(2):
        store = tmp_path / f"h{i}" / "store"
        store.mkdir(parents=True)
        config = tmp_path / f"h{i}" / "modelsync.toml"
        config.write_text(
            f'store = "{store}"\ninterval = "1h"\nidentity = "gcs-h{i}"\n\n'
            f'[[models]]\nname = "ranker"\nsource = "{backend.url}"\n'
            "\n"
            '[[events]]\nkind = "pubsub"\nmodels = ["ranker"]\n'
            f'options = {{ topic = "{topic}", wait = "5s" }}\n'
        )
        proc = DaemonProcess(["--config", str(config)], tmp_path / f"h{i}.log", env=env)
        procs.append(proc)
        running.append(proc)
    for proc in running:
        proc.wait_http()
        proc.wait_for(lambda e: e.get("event") == "first pass done; ready", timeout=60)
    names = {f"projects/{PROJECT}/subscriptions/modelsync-gcs-h{i}" for i in range(2)}
    deadline = time.monotonic() + 20
    while not names <= set(_subscriptions(publisher, topic)):
        assert time.monotonic() < deadline, "the hosts did not subscribe"
        time.sleep(0.2)
    publish(2)
    began = time.monotonic()
    announce(2)
    while any(_served(p) != 2 for p in running):
        assert time.monotonic() - began < 5, [p.log_path.read_text()[-2000:] for p in running]
        time.sleep(0.05)
    print(f"\npubsub, 2 hosts: announced -> served by both {time.monotonic() - began:.2f} s")
    for proc in running:
        assert proc.stop() == 0
    assert not names & set(_subscriptions(publisher, topic))


def _subscriptions(publisher: Any, topic: str) -> list[str]:
    return list(publisher.list_topic_subscriptions(request={"topic": topic}))
