"""S3 notifications through SQS (directly, and SNS fan-out to per-host queues) wake
real `modelsync run` processes on moto's server; hostile messages cost at most a pass."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.backends import S3_ENV
from tests.daemonproc import DaemonProcess
from tests.faultproxy import FaultProxy
from tests.helpers import model_files, run_cli, write_tree

REGION = "us-east-1"


def _client(endpoint: str, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=REGION,
    )


class Bucket:
    """A moto bucket holding models under ``models/``, with notifications to SQS or SNS."""

    def __init__(self, endpoint: str, tmp: Path) -> None:
        self.endpoint = endpoint
        self.name = "b-" + uuid.uuid4().hex[:12]
        self.tmp = tmp
        self.s3 = _client(endpoint, "s3")
        self.sqs = _client(endpoint, "sqs")
        self.sns = _client(endpoint, "sns")
        self.s3.create_bucket(Bucket=self.name)

    def url(self, model: str) -> str:
        return f"s3://{self.name}/models/{model}"

    def queue(self) -> str:
        """A queue the bucket notifies directly (S3 allows one such rule per event type
        and prefix: one host; a fleet fans out through SNS)."""
        url: str = self.sqs.create_queue(QueueName="q-" + uuid.uuid4().hex[:10])["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        self.notify(
            {"QueueConfigurations": [self._rule("QueueArn", arn["Attributes"]["QueueArn"])]}
        )
        return url

    def topic(self) -> str:
        arn: str = self.sns.create_topic(Name="t-" + uuid.uuid4().hex[:10])["TopicArn"]
        self.notify({"TopicConfigurations": [self._rule("TopicArn", arn)]})
        return arn

    def _rule(self, key: str, arn: str) -> dict[str, Any]:
        return {key: arn, "Events": ["s3:ObjectCreated:*"]}

    def notify(self, config: dict[str, Any]) -> None:
        self.s3.put_bucket_notification_configuration(
            Bucket=self.name, NotificationConfiguration=config
        )

    def publish(self, model: str, version: int, seed: int) -> float:
        """`modelsync publish` a revision, through a counting proxy; the (monotonic)
        time its manifest reached the store: the revision complete, what a host can
        react to at the earliest."""
        src = write_tree(self.tmp / f"src-{model}-{version}", model_files(seed, 2048))
        manifest = f"/{model}/{version}/modelsync-manifest.json"
        landed: list[float] = []
        proxy = FaultProxy(int(self.endpoint.rsplit(":", 1)[1])).start()
        done_event = threading.Event()

        def watch() -> None:
            while not done_event.is_set() and not landed:
                with proxy.lock:
                    if any(m == "PUT" and p.endswith(manifest) for m, p in proxy.requests):
                        landed.append(time.monotonic())
                time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            done = run_cli(
                "publish",
                str(src),
                self.url(model),
                "--version",
                str(version),
                "--source-option",
                f"endpoint_url={proxy.url}",
                "--source-option",
                "addressing_style=path",
                env=S3_ENV,
            )
        finally:
            done_event.set()
            watcher.join()
            proxy.stop()
        assert done.returncode == 0, done.stderr
        assert landed, "the manifest PUT was not seen"
        return landed[0]


@pytest.fixture
def bucket(moto_server: str, tmp_path: Path) -> Bucket:
    return Bucket(moto_server, tmp_path)


def _config(
    tmp: Path, name: str, bucket: Bucket, models: list[str], options: dict[str, Any]
) -> Path:
    store = tmp / name / "store"
    store.mkdir(parents=True)
    lines = [f'store = "{store}"', 'interval = "1h"', f'identity = "{name}"', ""]
    for model in models:
        lines += [
            "[[models]]",
            f'name = "{model}"',
            f'source = "{bucket.url(model)}"',
            "allow_empty = true",
            f'source_options = {{ endpoint_url = "{bucket.endpoint}", addressing_style = "path" }}',
            "",
        ]
    lines += ["[[events]]", 'kind = "sqs"', f"models = {json.dumps(models)}"]
    lines.append(
        "options = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items()) + " }"
    )
    path = tmp / name / "modelsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(procs: list[DaemonProcess], tmp: Path, name: str, config: Path) -> DaemonProcess:
    proc = DaemonProcess(["--config", str(config)], tmp / f"{name}.log", env=S3_ENV)
    procs.append(proc)
    return proc


def _served(proc: DaemonProcess, model: str) -> int | None:
    status, body = proc.http("GET", "/status")
    assert status == 200
    entry = next(m for m in json.loads(body)["models"] if m["name"] == model)
    version: int | None = entry["active_version"]
    return version


def _wait_served(procs: list[DaemonProcess], model: str, version: int, timeout: float) -> float:
    """The (monotonic) time by which every host serves ``version`` (raises after
    ``timeout``)."""
    start = time.monotonic()
    pending = list(procs)
    while pending:
        pending = [p for p in pending if _served(p, model) != version]
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not served within {timeout}s by {[p.log_path for p in pending]}")
        time.sleep(0.05)
    return time.monotonic()


def _metric(proc: DaemonProcess, name: str, **labels: str) -> float:
    _, body = proc.http("GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _publish_to_served(procs: list[DaemonProcess]) -> list[float]:
    """Each host's activation time minus the revision's creation time, which
    `modelsync publish` takes as it starts (before any upload)."""
    out = []
    for proc in procs:
        _, body = proc.http("GET", "/status")
        out.append(float(json.loads(body)["models"][0]["publish_to_served_seconds"]))
    return out


def _wakeup_latency(proc: DaemonProcess) -> float:
    """Mean seconds from the S3 event's time to the start of the pass it asked for."""
    total = _metric(proc, "modelsync_events_wakeup_latency_seconds_sum")
    return total / max(1.0, _metric(proc, "modelsync_events_wakeup_latency_seconds_count"))


def _first_pass(proc: DaemonProcess) -> None:
    proc.wait_http()
    proc.wait_for(lambda e: e.get("event") == "first pass done; ready", timeout=30)


def _receives(proxy: FaultProxy) -> int:
    with proxy.lock:
        return sum(b"WaitTimeSeconds" in body for body in proxy.bodies)


def test_one_host_reads_s3_notifications_from_its_queue(
    bucket: Bucket, tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """S3 -> SQS directly: with interval = 1h, a publish is served within 5 s of its
    manifest landing, and the status page shows the publish-to-served time."""
    bucket.publish("ranker", 1, seed=1)
    options = {"queue_url": bucket.queue(), "endpoint_url": bucket.endpoint}
    proc = _start(procs, tmp_path, "one", _config(tmp_path, "one", bucket, ["ranker"], options))
    _first_pass(proc)
    landed = bucket.publish("ranker", 2, seed=2)
    took = _wait_served([proc], "ranker", 2, timeout=30) - landed
    print(
        f"\nS3->SQS, 1 host: manifest landed -> served {took:.2f} s; publish start -> "
        f"served {_publish_to_served([proc])[0]} s; event -> pass start (mean) "
        f"{_wakeup_latency(proc):.3f} s"
    )
    assert took < 5
    assert _metric(proc, "modelsync_events_wakeups_total", model="ranker") >= 1
    _, page = proc.http("GET", "/")
    assert b"publish to served" in page


def test_three_hosts_fan_out_through_sns_serve_within_5s_and_idle_at_one_request_per_20s(
    bucket: Bucket, tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """S3 -> SNS -> a queue each host creates and subscribes: a publish is served by
    all three hosts within 5 s of its manifest landing; idle, each sends one
    ReceiveMessage per 20 s; a config reload keeps the queue; the queues are deleted at
    stop."""
    topic = bucket.topic()
    bucket.publish("ranker", 1, seed=1)
    port = int(bucket.endpoint.rsplit(":", 1)[1])
    proxies = [FaultProxy(port).start() for _ in range(3)]
    running = []
    try:
        for i, proxy in enumerate(proxies):
            options = {"topic_arn": topic, "endpoint_url": proxy.url}
            cfg = _config(tmp_path, f"fan{i}", bucket, ["ranker"], options)
            running.append(_start(procs, tmp_path, f"fan{i}", cfg))
        for proc in running:
            _first_pass(proc)
        queues = bucket.sqs.list_queues(QueueNamePrefix="modelsync-fan").get("QueueUrls", [])
        assert len(queues) == 3
        landed = bucket.publish("ranker", 2, seed=2)
        took = _wait_served(running, "ranker", 2, timeout=30) - landed
        print(
            f"\nS3->SNS->SQS, 3 hosts: manifest landed -> served by all {took:.2f} s; "
            f"publish start -> served per host {_publish_to_served(running)} s; event -> "
            f"pass start (mean) {[round(_wakeup_latency(p), 3) for p in running]} s"
        )
        assert took < 5
        time.sleep(1)
        for proxy in proxies:
            proxy.reset_counts()
        # One long poll lasts 20 s: in 21 s each host starts one or two, never more.
        time.sleep(21)
        counts = [_receives(p) for p in proxies]
        print(f"idle 21 s: ReceiveMessage per host {counts}")
        assert all(1 <= n <= 2 for n in counts), counts
        # A reload that leaves [[events]] alone keeps the host's queue (SQS refuses a
        # deleted name for a minute) and its subscription.
        config = tmp_path / "fan0" / "modelsync.toml"
        config.write_text(config.read_text().replace("allow_empty = true", "keep = 3"))
        mark = len(running[0].events())
        running[0].signal(signal.SIGHUP)
        running[0].wait_for(lambda e: e.get("event") == "config reloaded", after=mark)
        assert sorted(
            bucket.sqs.list_queues(QueueNamePrefix="modelsync-fan").get("QueueUrls", [])
        ) == sorted(queues)
        landed = bucket.publish("ranker", 3, seed=3)
        assert _wait_served(running, "ranker", 3, timeout=30) - landed < 5
        for proc in running:
            assert proc.stop() == 0
        left = bucket.sqs.list_queues(QueueNamePrefix="modelsync-fan").get("QueueUrls", [])
        assert left == []
    finally:
        for proxy in proxies:
            proxy.stop()


def _s3_event(
    bucket: str, key: str, etag: str, when: str = "2026-12-05T08:00:00.000Z", records: int = 1
) -> str:
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": when,
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": etag, "size": 1}},
    }
    return json.dumps({"Records": [record] * records})


def _passes(proc: DaemonProcess) -> float:
    return _metric(proc, "modelsync_sync_total", model="ranker")


def _send(bucket: Bucket, queue: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
        ]
        bucket.sqs.send_message_batch(QueueUrl=queue, Entries=entries)


def _drained(bucket: Bucket, queue: str) -> bool:
    attrs = bucket.sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in attrs.values())


def _settled(proc: DaemonProcess, bucket: Bucket, queue: str, before: float) -> float:
    """Passes since ``before`` once the queue is drained and no pass ran for 4 s."""
    last, quiet = _passes(proc), time.monotonic()
    while time.monotonic() - quiet < 4 or not _drained(bucket, queue):
        time.sleep(0.5)
        now = _passes(proc)
        if now != last:
            last, quiet = now, time.monotonic()
    return last - before


# moto's SQS scans the whole queue for every message sent and received (quadratic in
# the queue's length): 1,000 one-record messages took 105 s of CI, so the 1,000
# duplicate records travel as 250 messages of four, as one S3 message may carry several.
@pytest.mark.timeout(600)
def test_hostile_events_cost_at_most_one_pass_per_burst_and_serve_nothing(
    bucket: Bucket, tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """Forged (another model, a version the bucket lacks), 1,000 duplicate records in
    250 messages, out of order, malformed and huge messages: at most one extra pass per
    burst, only what the bucket holds is served, the daemon goes on and still wakes for
    a real publish."""
    queue = bucket.queue()
    bucket.publish("ranker", 1, seed=1)
    options = {"queue_url": queue, "endpoint_url": bucket.endpoint}
    proc = _start(
        procs, tmp_path, "hostile", _config(tmp_path, "hostile", bucket, ["ranker"], options)
    )
    _first_pass(proc)
    manifest = "models/ranker/{}/modelsync-manifest.json"
    bursts = {
        "another model": [_s3_event(bucket.name, "models/other/5/modelsync-manifest.json", "a")],
        "missing version x1000": [_s3_event(bucket.name, manifest.format(99), "f", records=4)]
        * 250,
        "out of order": [_s3_event(bucket.name, manifest.format(v), f"o{v}") for v in (1, 1, 0)],
        "malformed": ["not json", "{}", '{"Records": [1]}', '{"Type": "Notification"}'],
        "huge": [json.dumps({"Records": [], "pad": "x" * 250_000})],
    }
    passes = _settled(proc, bucket, queue, 0)
    for what, bodies in bursts.items():
        _send(bucket, queue, bodies)
        extra = _settled(proc, bucket, queue, passes)
        passes += extra
        print(f"{what}: {extra:.0f} extra passes")
        assert extra <= 1, what
        assert _served(proc, "ranker") == 1
    assert _metric(proc, "modelsync_events_malformed_total") >= 5
    assert _metric(proc, "modelsync_events_ignored_total") >= 1000
    store = tmp_path / "hostile" / "store" / "ranker"
    assert sorted(p.name for p in store.iterdir()) == ["1", "current"]
    # With interval = 1h only an event can bring version 2 in.
    bucket.publish("ranker", 2, seed=2)
    _wait_served([proc], "ranker", 2, timeout=30)


def test_a_deleted_queue_is_reported_and_recovers(
    bucket: Bucket, tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """The queue deleted mid-run: /readyz stays 200 and lists it as degraded, the
    metric and the log say so, POST /sync still passes; once the queue is back, a
    publish wakes the host again and the log says it recovered."""
    queue = bucket.queue()
    bucket.publish("ranker", 1, seed=1)
    options = {"queue_url": queue, "endpoint_url": bucket.endpoint, "wait": "2s"}
    proc = _start(procs, tmp_path, "gone", _config(tmp_path, "gone", bucket, ["ranker"], options))
    _first_pass(proc)
    name = queue.rsplit("/", 1)[1]
    bucket.sqs.delete_queue(QueueUrl=queue)
    proc.wait_for(lambda e: e.get("event") == "event source failing; polling covers", timeout=10)
    status, body = proc.http("GET", "/readyz")
    assert status == 200
    assert any("sqs:ranker" in line for line in json.loads(body)["degraded"])
    assert _metric(proc, "modelsync_events_source_up") == 0
    _, status_doc = proc.http("GET", "/status")
    assert json.loads(status_doc)["events"][0]["last_error"]
    _, page = proc.http("GET", "/")
    assert b"Event sources" in page and b"failing" in page
    bucket.publish("ranker", 2, seed=2)
    assert proc.http("POST", "/sync")[0] == 202
    _wait_served([proc], "ranker", 2, timeout=10)
    bucket.sqs.create_queue(QueueName=name)
    _queue_arn = bucket.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    bucket.notify({"QueueConfigurations": [bucket._rule("QueueArn", _queue_arn)]})
    proc.wait_for(lambda e: e.get("event") == "event source recovered", timeout=70)
    status, body = proc.http("GET", "/readyz")
    assert json.loads(body)["degraded"] == []
    woken = _metric(proc, "modelsync_events_wakeups_total")
    bucket.publish("ranker", 3, seed=3)
    _wait_served([proc], "ranker", 3, timeout=30)
    assert _metric(proc, "modelsync_events_wakeups_total") > woken


def test_a_message_nested_past_the_parser_is_malformed_and_the_source_reads_on(
    bucket: Bucket, tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """One message of 60,000 '[' (the JSON parser's RecursionError) is logged in one
    line as malformed and deleted; the source stays up, and a publish afterwards still
    wakes the host (interval 1h: only the event can bring it in)."""
    queue = bucket.queue()
    bucket.publish("ranker", 1, seed=1)
    options = {"queue_url": queue, "endpoint_url": bucket.endpoint, "wait": "1s"}
    proc = _start(
        procs, tmp_path, "poison", _config(tmp_path, "poison", bucket, ["ranker"], options)
    )
    _first_pass(proc)
    _send(bucket, queue, ["[" * 60_000])
    ignored = proc.wait_for(
        lambda e: e.get("event") == "event message ignored: malformed", timeout=15
    )
    assert ignored["reason"] == "JSON nested too deeply"
    bucket.publish("ranker", 2, seed=2)
    _wait_served([proc], "ranker", 2, timeout=30)
    assert _metric(proc, "modelsync_events_malformed_total") == 1
    _, status_doc = proc.http("GET", "/status")
    (source,) = json.loads(status_doc)["events"]
    assert source["up"] is True and source["last_error"] is None
    assert _drained(bucket, queue)
    assert "Traceback" not in proc.log_path.read_text()


def test_a_reload_adding_a_source_that_cannot_open_keeps_the_running_sources(
    bucket: Bucket, tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """A reload adding a second source with a profile that does not exist is refused
    in one line, and the running source keeps reading: a publish afterwards is served
    (interval 1h: only its event can bring it in)."""
    queue = bucket.queue()
    bucket.publish("ranker", 1, seed=1)
    options = {"queue_url": queue, "endpoint_url": bucket.endpoint, "wait": "1s"}
    config = _config(tmp_path, "keep", bucket, ["ranker", "embedder"], options)
    empty = tmp_path / "aws-config"
    empty.write_text("")
    proc = DaemonProcess(
        ["--config", str(config)],
        tmp_path / "keep.log",
        env={**S3_ENV, "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty)},
    )
    procs.append(proc)
    _first_pass(proc)
    with config.open("a") as handle:
        handle.write(
            '[[events]]\nkind = "sqs"\nmodels = ["embedder"]\n'
            f'options = {{ queue_url = "{queue}", endpoint_url = "{bucket.endpoint}", '
            'profile = "prod-typo" }\n'
        )
    after = len(proc.events())
    proc.signal(signal.SIGHUP)
    failed = proc.wait_for(
        lambda e: e.get("event", "").startswith("config reload failed"), after=after
    )
    assert "events sqs:embedder: cannot open: ProfileNotFound" in failed["error"], failed
    bucket.publish("ranker", 2, seed=2)
    _wait_served([proc], "ranker", 2, timeout=30)
    _, status_doc = proc.http("GET", "/status")
    (source,) = json.loads(status_doc)["events"]
    assert source["name"] == "sqs:ranker,embedder" and source["up"] is True
    assert proc.proc.poll() is None
