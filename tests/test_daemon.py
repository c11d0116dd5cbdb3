"""`modelsync run` as a real child process: schedule, endpoint, signals, reloads, systemd."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelsync.config import default_state_dir
from tests.daemonproc import DaemonProcess
from tests.faultproxy import FaultPlan, FaultProxy
from tests.helpers import (
    check_invariants,
    model_files,
    put_revision,
    run_cli,
    sidecar_flags,
    snapshot,
)


def _activated(version: int, model: str = "ranker") -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e.get("event") == "committed" and e.get("version") == version and e.get("model") == model
    )


def test_new_version_becomes_active_and_endpoint_answers(
    tmp_path: Path, bucket: Path, store: Path, procs: list[DaemonProcess]
) -> None:
    """Published revisions become active; /healthz, /readyz, /metrics, /status, POST /sync."""
    daemon = DaemonProcess(
        [
            *sidecar_flags(store, bucket),
            "--interval",
            "1s",
            "--token",
            "s3cret",
        ],
        tmp_path / "log",
    )
    procs.append(daemon)
    daemon.wait_http()
    assert daemon.http("GET", "/healthz")[0] == 200
    status, body = daemon.http("GET", "/readyz")
    reasons = json.loads(body)["not_ready"]
    # The reason carries the last error once a pass ran (an empty bucket names its URL).
    assert status == 503 and any(r.startswith("ranker: no active version") for r in reasons)
    put_revision(bucket, 1, model_files(1))
    daemon.wait_for(_activated(1))
    assert daemon.http("GET", "/readyz")[0] == 200
    put_revision(bucket, 2, model_files(2))
    daemon.wait_for(_activated(2))
    assert (store / "ranker" / "current" / "saved_model.pb").read_bytes() == b"graph-2"
    # The pass is folded into the metrics when it returns, just after "activated"
    # is logged (notify, confirm and commit come between): wait for that.
    deadline = time.monotonic() + 20
    while True:
        text = daemon.http("GET", "/metrics")[1].decode()
        if 'outcome="activated"} 2.0' in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for line in (
        'modelsync_active_version{model="ranker"} 2.0',
        'modelsync_sync_total{model="ranker",outcome="activated"} 2.0',
        'modelsync_last_success_timestamp_seconds{model="ranker"}',
        'modelsync_revision_age_seconds{model="ranker"}',
        'modelsync_download_bytes_total{model="ranker"}',
        'modelsync_sync_duration_seconds_count{model="ranker"}',
    ):
        assert line in text, line
    _, body = daemon.http("GET", "/status")
    live = json.loads(body)["models"][0]
    cli = json.loads(
        run_cli(
            "status",
            "--json",
            *sidecar_flags(store, bucket),
        ).stdout
    )["models"][0]
    assert live["active_version"] == cli["active_version"] == 2
    assert set(cli) <= set(live)
    assert daemon.http("POST", "/sync")[0] == 401
    assert daemon.http("POST", "/sync", {"Authorization": "Bearer wrong"})[0] == 401
    status, body = daemon.http("POST", "/sync", {"Authorization": "Bearer s3cret"})
    assert status == 202 and json.loads(body) == {"queued": ["ranker"]}
    assert daemon.http("POST", "/sync?model=nope", {"Authorization": "Bearer s3cret"})[0] == 404
    assert "s3cret" not in daemon.log_path.read_text()
    assert "tensorflow" not in Path(f"/proc/{daemon.pid}/maps").read_text()
    assert daemon.stop() == 0


def test_sigterm_during_a_large_download_exits_promptly(
    tmp_path: Path,
    gcs_emulator: str,
    gcs_bucket: str,
    fault_proxy: FaultProxy,
    procs: list[DaemonProcess],
) -> None:
    """SIGTERM mid-download: exit 0 within 5 s, staging removed, store untouched; the
    progress gauge showed the download while it ran."""
    from tests.backends import GcsBackend, put_objects, shard_files

    backend = GcsBackend(gcs_emulator, gcs_bucket)
    put_objects(backend, 1, shard_files(2, 1000, 1))
    store = tmp_path / "store"
    env = {"STORAGE_EMULATOR_HOST": fault_proxy.url}
    flags = [
        *sidecar_flags(store, backend.url),
        "--interval",
        "1h",
    ]
    daemon = DaemonProcess(flags, tmp_path / "log", env=env)
    procs.append(daemon)
    daemon.wait_for(_activated(1))
    before = snapshot(store / "ranker")
    put_objects(backend, 2, shard_files(4, 8 * 1024 * 1024, 2))
    fault_proxy.plan = FaultPlan(throttle=4 * 1024 * 1024)
    mark = len(daemon.events())
    daemon.wait_http()
    daemon.http("POST", "/sync")
    daemon.wait_for(lambda e: e.get("event") == "downloading" and e.get("version") == 2, after=mark)
    time.sleep(1.0)
    # While it runs, the download's progress is a gauge (bytes in place so far).
    status, body = daemon.http("GET", "/metrics")
    (line,) = [x for x in body.decode().splitlines() if x.startswith("modelsync_download_progress")]
    assert status == 200 and 0 < float(line.split()[-1]) < 4 * 8 * 1024 * 1024, line
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert time.monotonic() - started < 5
    assert snapshot(store / "ranker") == before
    assert not list((default_state_dir(store) / "staging").rglob("*"))
    assert any(e.get("event") == "sync cancelled" for e in daemon.events())


def test_sighup_reloads_config_and_adds_a_model(tmp_path: Path, procs: list[DaemonProcess]) -> None:
    """SIGHUP alone (the file is edited where no watcher looks) adds a model."""
    store = tmp_path / "store"
    for name in ("a", "b"):
        put_revision(tmp_path / "bucket" / name, 1, model_files(ord(name)), model=name)
    real = tmp_path / "elsewhere" / "modelsync.toml"
    real.parent.mkdir()
    base = f'store = "{store}"\ninterval = "1h"\n'
    model = '[[models]]\nname = "{0}"\nsource = "file://{1}/bucket/{0}"\n'
    real.write_text(base + model.format("a", tmp_path))
    link = tmp_path / "etc" / "modelsync.toml"
    link.parent.mkdir()
    link.symlink_to(real)
    daemon = DaemonProcess(["--config", str(link)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_for(_activated(1, "a"))
    real.write_text(base + model.format("a", tmp_path) + model.format("b", tmp_path))
    time.sleep(1.5)
    assert not (store / "b").exists()  # no watcher saw that edit
    daemon.signal(signal.SIGHUP)
    event = daemon.wait_for(lambda e: e.get("event") == "config reloaded")
    assert event["trigger"] == "signal" and event["models"] == ["a", "b"]
    daemon.wait_for(_activated(1, "b"))
    assert check_invariants(store, "b").violations == []


def test_configmap_style_edit_reloads_and_invalid_edit_is_ignored(
    tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """A ..data symlink swap (Kubernetes ConfigMap) reloads; a bad edit keeps the old config."""
    store = tmp_path / "store"
    for name in ("a", "b"):
        put_revision(tmp_path / "bucket" / name, 1, model_files(ord(name)), model=name)
    volume = tmp_path / "config"
    volume.mkdir()
    base = f'store = "{store}"\ninterval = "1h"\n'
    model = '[[models]]\nname = "{0}"\nsource = "file://{1}/bucket/{0}"\n'

    def publish_configmap(generation: int, text: str) -> None:
        data = volume / f"..2026_{generation}"
        data.mkdir()
        (data / "modelsync.toml").write_text(text)
        tmp_link = volume / "..data_tmp"
        tmp_link.symlink_to(data.name)
        tmp_link.rename(volume / "..data")

    publish_configmap(1, base + model.format("a", tmp_path))
    (volume / "modelsync.toml").symlink_to("..data/modelsync.toml")
    daemon = DaemonProcess(["--config", str(volume / "modelsync.toml")], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_for(_activated(1, "a"))
    publish_configmap(2, base + model.format("a", tmp_path) + model.format("b", tmp_path))
    event = daemon.wait_for(lambda e: e.get("event") == "config reloaded")
    assert event["trigger"] == "file"
    daemon.wait_for(_activated(1, "b"))
    publish_configmap(3, base + "keep = 'x'\n")
    bad = daemon.wait_for(lambda e: e.get("event", "").startswith("config reload failed"))
    assert "keep: unknown key" in bad["error"]
    assert daemon.http("GET", "/readyz")[0] == 200
    publish_configmap(4, base + model.format("b", tmp_path))
    removed = daemon.wait_for(lambda e: e.get("event", "").startswith("model removed"))
    assert removed["model"] == "a"
    assert (store / "a" / "current").is_symlink()  # its files stay
    assert daemon.stop() == 0


def test_systemd_notify_ready_watchdog_stopping(
    tmp_path: Path, bucket: Path, store: Path, procs: list[DaemonProcess]
) -> None:
    """A real unix datagram socket receives READY=1, WATCHDOG=1, STATUS= and STOPPING=1."""
    put_revision(bucket, 1, model_files(1))
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    daemon = DaemonProcess(
        [
            *sidecar_flags(store, bucket),
            "--interval",
            "1h",
        ],
        tmp_path / "log",
        env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000"},
    )
    procs.append(daemon)
    messages: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 3:
        messages.append(sock.recv(4096).decode())
    assert any(m.startswith("READY=1") and "STATUS=ranker: v1 activated" in m for m in messages)
    assert sum("WATCHDOG=1" in m for m in messages) >= 3
    daemon.signal(signal.SIGTERM)
    tail: list[str] = []
    while "STOPPING=1" not in "".join(tail):
        tail.append(sock.recv(4096).decode())
    assert daemon.proc.wait(10) == 0
    sock.close()


def test_max_failures_exits_1(tmp_path: Path, store: Path, procs: list[DaemonProcess]) -> None:
    """A model failing max_failures passes in a row makes run exit 1 (supervisor restarts)."""
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{store}"\ninterval = "1h"\nmax_failures = 3\n'
        f'[[models]]\nname = "m"\nsource = "file://{tmp_path}/missing"\n'
    )
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
    procs.append(daemon)
    assert daemon.proc.wait(60) == 1
    failures = [e for e in daemon.events() if e.get("event") == "sync failed"]
    assert len(failures) == 3
    assert any(e.get("event") == "giving up" for e in daemon.events())


def test_a_slow_model_does_not_block_another(
    tmp_path: Path,
    gcs_emulator: str,
    gcs_bucket: str,
    fault_proxy: FaultProxy,
    bucket: Path,
    procs: list[DaemonProcess],
) -> None:
    """While one model crawls through a throttled download, another activates promptly."""
    from tests.backends import GcsBackend, put_objects, shard_files

    backend = GcsBackend(gcs_emulator, gcs_bucket)
    put_objects(backend, 1, shard_files(2, 6 * 1024 * 1024, 9))
    fault_proxy.plan = FaultPlan(throttle=1024 * 1024)
    store = tmp_path / "store"
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{store}"\ninterval = "1h"\n'
        f'[[models]]\nname = "ranker"\nsource = "{backend.url}"\n'
        f'[[models]]\nname = "fast"\nsource = "file://{bucket}"\n'
    )
    daemon = DaemonProcess(
        ["--config", str(config)], tmp_path / "log", env={"STORAGE_EMULATOR_HOST": fault_proxy.url}
    )
    procs.append(daemon)
    daemon.wait_for(lambda e: e.get("event") == "downloading" and e.get("model") == "ranker")
    put_revision(bucket, 5, model_files(5), model="fast")
    started = time.monotonic()
    daemon.wait_for(_activated(5, "fast"))
    assert time.monotonic() - started < 5
    assert not (store / "ranker" / "current").exists()
    assert os.readlink(store / "fast" / "current") == "5"


def test_a_flood_of_sync_requests_costs_a_few_passes(
    tmp_path: Path, bucket: Path, store: Path, procs: list[DaemonProcess]
) -> None:
    """300 POST /sync in a second coalesce: a handful of passes, not hundreds (issue 11
    finding 25)."""
    put_revision(bucket, 1, model_files(1))
    daemon = DaemonProcess([*sidecar_flags(store, bucket), "--interval", "1h"], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_http()
    daemon.wait_for(lambda e: e.get("event") == "first pass done; ready")
    for _ in range(300):
        assert daemon.http("POST", "/sync")[0] == 202
    time.sleep(4)
    metrics = daemon.http("GET", "/metrics")[1].decode()
    counts = [
        float(row.rsplit(" ", 1)[1])
        for row in metrics.splitlines()
        if row.startswith("modelsync_sync_total{")
    ]
    assert counts and sum(counts) <= 4, metrics


def test_sigterm_while_an_s3_read_drips_exits_within_5_s(
    tmp_path: Path, s3_backend: Any, procs: list[DaemonProcess]
) -> None:
    """`modelsync run` blocked on an S3 object answer dripped at 1 byte / 2 s (moto
    behind a proxy): SIGTERM ends it with exit 0 within 5 s, staging cleaned, store
    untouched."""
    from tests.backends import S3_ENV, put_objects, shard_files

    put_objects(s3_backend, 1, shard_files(1, 1000, 1))
    port = int(s3_backend.options()["endpoint_url"].rsplit(":", 1)[1])
    proxy = FaultProxy(port).start()
    try:
        store = tmp_path / "store"
        env = {**S3_ENV, "AWS_ENDPOINT_URL_S3": proxy.url}
        flags = [*sidecar_flags(store, s3_backend.url), "--interval", "1h"]
        daemon = DaemonProcess(flags, tmp_path / "log", env=env)
        procs.append(daemon)
        daemon.wait_for(_activated(1))
        before = snapshot(store / "ranker")
        put_objects(s3_backend, 2, shard_files(1, 1000, 2))
        media = s3_backend.in_path("2/variables/shard-")
        proxy.plan = FaultPlan(drip=2.0, slow=lambda path: media in path)
        daemon.wait_http()
        daemon.http("POST", "/sync")
        deadline = time.monotonic() + 30
        while not any(media in path for _, path in proxy.requests):
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.1)
        time.sleep(1.0)
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(10) == 0
        print(f"SIGTERM on a dripping S3 read: exit 0 after {time.monotonic() - started:.2f} s")
        assert time.monotonic() - started < 5
        assert snapshot(store / "ranker") == before
        assert not list((default_state_dir(store) / "staging").rglob("*"))
    finally:
        proxy.stop()


def test_sigterm_while_a_confirm_answer_drips_exits_within_5_s(
    tmp_path: Path, bucket: Path, procs: list[DaemonProcess]
) -> None:
    """`modelsync run` waiting on a confirm endpoint that drips its answer (confirm
    timeout 60 s): SIGTERM ends it with exit 0 within 5 s, staging cleaned, the store
    whole (the next start finishes or undoes the swap)."""
    from tests.httpstub import http_stub

    with http_stub(lambda *_: (200, b"{}")) as (url, _seen):
        proxy = FaultProxy(int(url.rsplit(":", 1)[1])).start()
        try:
            store = tmp_path / "store"
            put_revision(bucket, 1, model_files(1))
            config = tmp_path / "c.toml"
            config.write_text(
                f'store = "{store}"\ninterval = "1h"\n[[models]]\nname = "ranker"\n'
                f'source = "file://{bucket}"\n[models.confirm]\nmethod = "http"\n'
                f'url = "{proxy.url}/ready"\ntimeout = "60s"\n'
            )
            daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
            procs.append(daemon)
            daemon.wait_for(_activated(1))
            proxy.plan = FaultPlan(drip=2.0)
            mark = len(proxy.requests)
            put_revision(bucket, 2, model_files(2))
            daemon.wait_http()
            daemon.http("POST", "/sync")
            deadline = time.monotonic() + 30
            while len(proxy.requests) == mark:
                assert time.monotonic() < deadline, "the confirm never started"
                time.sleep(0.1)
            time.sleep(1.0)
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            assert daemon.proc.wait(10) == 0
            elapsed = time.monotonic() - started
            print(f"SIGTERM on a dripping confirm: exit 0 after {elapsed:.2f} s")
            assert elapsed < 5
            assert not list((default_state_dir(store) / "staging").rglob("*"))
            check_invariants(store, "ranker")
        finally:
            proxy.stop()


def test_a_reload_of_a_config_that_could_block_or_flood_keeps_the_daemon(
    tmp_path: Path, bucket: Path, store: Path, procs: list[DaemonProcess]
) -> None:
    """The config replaced by a FIFO, a 64 GiB sparse file, then TOML nested past the
    parser's recursion, each followed by SIGHUP: each reload fails in one line and keeps
    the running configuration; the main loop still answers (a later good edit
    reloads), passes go on (revision 2 is served), and SIGTERM exits 0 at once."""
    put_revision(bucket, 1, model_files(1))
    config = tmp_path / "modelsync.toml"
    good = (
        f'store = "{store}"\ninterval = "1s"\n'
        f'[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
    )
    config.write_text(good)
    # No watcher on this path: each reload below is the SIGHUP's alone.
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_for(_activated(1))

    def replace(make: Callable[[Path], object]) -> None:
        new = tmp_path / "modelsync.toml.new"
        make(new)
        os.replace(new, config)

    def huge(path: Path) -> None:
        with path.open("wb") as handle:
            handle.truncate(64 << 30)

    for make, says in (
        (os.mkfifo, "is a FIFO, not a regular file"),
        (huge, "larger than 1 MiB"),
        (lambda p: p.write_text("store = " + "[" * 200_000), "nested too deeply"),
    ):
        replace(make)
        after = len(daemon.events())
        daemon.signal(signal.SIGHUP)
        failed = daemon.wait_for(
            lambda e: e.get("event", "").startswith("config reload failed"), after=after
        )
        assert str(config) in failed["error"] and says in failed["error"], failed
        assert daemon.proc.poll() is None
    put_revision(bucket, 2, model_files(2))
    daemon.wait_for(_activated(2))
    replace(lambda p: p.write_text(good))
    after = len(daemon.events())
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(lambda e: e.get("event") == "config reloaded", after=after)
    started = time.monotonic()
    assert daemon.stop(timeout=10) == 0
    assert time.monotonic() - started < 5


# [[events]] sources the config's validation cannot judge whole: a profile that does not
# exist (known only to botocore, when the source is opened), and a connection string
# the Azure SDK cannot parse (checked when the config loads).
_BROKEN_EVENTS = {
    "sqs-profile": (
        'kind = "sqs"\nmodels = ["embedder"]\noptions = { queue_url = "http://127.0.0.1:9/q", '
        'region = "us-east-1", profile = "prod-typo" }\n',
        "events sqs:embedder: cannot open: ProfileNotFound: "
        "The config profile (prod-typo) could not be found",
    ),
    "azure-connection-string": (
        'kind = "azure-queue"\nmodels = ["embedder"]\n'
        'options = { queue = "model-events", connection_string = "AccountName=x;AccountKey" }\n',
        "options: connection_string: not key=value pairs separated by ';'",
    ),
}


def _with_embedder(store: Path, bucket: Path) -> str:
    """ranker from ``bucket``, and embedder from an S3 endpoint that refuses (its passes
    fail; file:// sources take no events)."""
    return (
        f'store = "{store}"\ninterval = "1s"\n'
        f'[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
        '[[models]]\nname = "embedder"\nsource = "s3://models/embedder"\n'
        'source_options = { endpoint_url = "http://127.0.0.1:9", region = "us-east-1" }\n'
    )


def _no_aws_profiles(tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "aws-config"
    empty.write_text("")
    return {
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
    }


@pytest.mark.parametrize("broken", sorted(_BROKEN_EVENTS))
def test_a_reload_adding_an_event_source_that_cannot_open_keeps_the_daemon(
    tmp_path: Path, bucket: Path, store: Path, procs: list[DaemonProcess], broken: str
) -> None:
    """A reload adding an [[events]] source that cannot be opened is refused in one
    line; the daemon keeps running its configuration (no event source), and a revision
    published afterwards is served."""
    put_revision(bucket, 1, model_files(1))
    config = tmp_path / "modelsync.toml"
    config.write_text(_with_embedder(store, bucket))
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log", _no_aws_profiles(tmp_path))
    procs.append(daemon)
    daemon.wait_for(_activated(1))
    events, says = _BROKEN_EVENTS[broken]
    config.write_text(config.read_text() + "[[events]]\n" + events)
    after = len(daemon.events())
    daemon.signal(signal.SIGHUP)
    failed = daemon.wait_for(
        lambda e: e.get("event", "").startswith("config reload failed"), after=after
    )
    assert failed["event"] == "config reload failed; keeping the running configuration"
    assert says in failed["error"] and "\n" not in failed["error"], failed
    put_revision(bucket, 2, model_files(2))
    daemon.wait_for(_activated(2))
    assert daemon.proc.poll() is None
    _, body = daemon.http("GET", "/status")
    assert json.loads(body)["events"] == []
    assert "Traceback" not in daemon.log_path.read_text()
    assert daemon.stop(timeout=10) == 0


@pytest.mark.parametrize("broken", sorted(_BROKEN_EVENTS))
def test_an_event_source_that_cannot_open_fails_the_start_in_one_line(
    tmp_path: Path, bucket: Path, store: Path, broken: str
) -> None:
    """`modelsync run` with an [[events]] source that cannot be opened exits 2 with one
    line naming it, before anything is served."""
    put_revision(bucket, 1, model_files(1))
    events, says = _BROKEN_EVENTS[broken]
    config = tmp_path / "modelsync.toml"
    config.write_text(_with_embedder(store, bucket) + "[[events]]\n" + events)
    done = run_cli("run", "--config", str(config), env=_no_aws_profiles(tmp_path), timeout=60)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("modelsync: config error: ") and says in line, line
    assert not (store / "ranker" / "current").exists()
