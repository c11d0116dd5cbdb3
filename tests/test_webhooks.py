"""MLflow's signed registry webhooks on the daemon's admin endpoint: a real MLflow
server's alias event wakes the daemon; unsigned, forged, stale or oversized
deliveries are refused (4xx, logged) and change nothing."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelsync.publish import publish
from modelsync.webhooks import MAX_BODY_BYTES, SECRET_LIMIT, read_secret, sign
from tests.daemonproc import DaemonProcess
from tests.helpers import free_port, model_files, put_revision, run_cli, write_tree
from tests.mlflowserver import WEBHOOK_CACHE_S, Registry

pytestmark = pytest.mark.timeout(600)

SECRET = b"a-webhook-secret-of-32-bytes-...."


def _activated(version: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("event") == "committed" and e.get("version") == version


def _config(tmp_path: Path, source: str, allowed: str, secret: bytes | None = SECRET) -> Path:
    lines = [f'store = "{tmp_path / "store"}"', 'interval = "1h"', "[admin]"]
    if secret is not None:
        (tmp_path / "secret").write_bytes(secret + b"\n")
        lines.append(f'mlflow_webhook_secret_file = "{tmp_path / "secret"}"')
    lines += ["[[models]]", 'name = "ranker"', f'source = "{source}"']
    lines += ["[models.source_options]", f'allowed_stores = ["{allowed}"]']
    config = tmp_path / "modelsync.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/mlflow", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def _signed(body: bytes, secret: bytes = SECRET, at: float | None = None) -> dict[str, str]:
    delivery, stamp = str(uuid.uuid4()), str(int(at if at is not None else time.time()))
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": sign(secret, delivery, stamp, body),
    }


def _alias_event(name: str, alias: str = "champion", version: str = "2") -> bytes:
    data = {"name": name, "alias": alias, "version": version}
    doc = {"entity": "model_version_alias", "action": "created", "data": data}
    return json.dumps(doc).encode()


def test_an_alias_moved_in_mlflow_wakes_the_daemon(
    tmp_path: Path, mlflow_registry: Registry, procs: list[DaemonProcess]
) -> None:
    """MLflow's own signed delivery wakes a daemon whose interval is an hour."""
    name = f"hooked-{tmp_path.name[-12:]}"
    run_id, artifacts = mlflow_registry.new_run()
    store = f"{artifacts}/ranker"
    for version, seed in ((1000, 1), (2000, 2)):
        publish(write_tree(tmp_path / f"src{version}", model_files(seed)), store, version=version)
    one = mlflow_registry.register(name, f"{store}/1000", run_id)
    two = mlflow_registry.register(name, f"{store}/2000", run_id)
    mlflow_registry.set_alias(name, "champion", one)
    config = _config(tmp_path, mlflow_registry.source_url(name, "champion"), artifacts)
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_for(_activated(1000), timeout=60)
    hook = {
        "name": f"modelsync-{name}",
        "url": f"http://127.0.0.1:{daemon.port}/webhooks/mlflow",
        "events": [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}],
        "secret": SECRET.decode(),
    }
    mlflow_registry.call("POST", "2.0/mlflow/webhooks", hook)
    time.sleep(WEBHOOK_CACHE_S)
    mark = len(daemon.events())
    mlflow_registry.set_alias(name, "champion", two)
    daemon.wait_for(_activated(2000), timeout=60, after=mark)
    served = tmp_path / "store" / "ranker" / "2000" / "saved_model.pb"
    assert served.read_bytes() == b"graph-2"


def test_deliveries_without_a_valid_signature_are_refused(
    tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """Unsigned, forged, stale, oversized or malformed deliveries get 4xx, are logged,
    and queue nothing; a signed event for another alias queues nothing either."""
    bucket = tmp_path / "bucket"
    put_revision(bucket / "ranker", 1000, model_files(1))
    # The registry is never reached: an hour's interval, and only refusals arrive.
    source = "mlflow+http://127.0.0.1:9/ranker@champion"
    config = _config(tmp_path, source, f"file://{bucket}")
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_http()
    event = _alias_event("ranker")
    unsigned = {"Content-Type": "application/json"}
    forged = _signed(event, secret=b"another-secret-of-enough-length")
    stale = _signed(event, at=time.time() - 3600)
    tampered = {**_signed(event), "X-MLflow-Delivery-Id": "another-id"}
    for headers, body in ((unsigned, event), (forged, event), (stale, event), (tampered, event)):
        status, doc = _post(daemon.port, body, headers)
        assert status == 401, doc
    huge = b"{" + b" " * MAX_BODY_BYTES + b"}"
    assert _post(daemon.port, huge, _signed(huge))[0] == 400
    assert _post(daemon.port, b"[1, 2", _signed(b"[1, 2"))[0] == 400
    wrong = json.dumps({"entity": "model_version_alias", "data": {"name": 1}}).encode()
    assert _post(daemon.port, wrong, _signed(wrong))[0] == 400
    other = _alias_event("ranker", alias="challenger")
    assert _post(daemon.port, other, _signed(other)) == (202, {"queued": [], "action": "created"})
    tag = json.dumps({"entity": "model_version_tag", "action": "set", "data": {}}).encode()
    status, doc = _post(daemon.port, tag, _signed(tag))
    assert status == 202 and doc["queued"] == []
    refusals = [
        e for e in daemon.events() if e.get("event") == "admin: refused an MLflow webhook delivery"
    ]
    assert len(refusals) == 7
    assert daemon.http("GET", "/healthz")[0] == 200


def test_a_signed_alias_event_queues_the_models_that_follow_it(
    tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """A valid delivery for the followed model and alias queues its pass (202)."""
    bucket = tmp_path / "bucket"
    put_revision(bucket / "ranker", 1000, model_files(1))
    config = _config(tmp_path, "mlflow+http://127.0.0.1:9/ranker@champion", f"file://{bucket}")
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_http()
    event = _alias_event("ranker")
    assert _post(daemon.port, event, _signed(event)) == (
        202,
        {"queued": ["ranker"], "action": "created"},
    )


def test_without_a_secret_the_webhook_endpoint_does_not_exist(
    tmp_path: Path, procs: list[DaemonProcess]
) -> None:
    """No mlflow_webhook_secret_file: POST /webhooks/mlflow is 404."""
    config = _config(tmp_path, "mlflow+http://127.0.0.1:9/ranker", "file:///srv", secret=None)
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_http()
    event = _alias_event("ranker")
    assert _post(daemon.port, event, _signed(event))[0] == 404


@pytest.mark.parametrize(("secret", "says"), [(b"short", "under 16 bytes"), (None, "cannot read")])
def test_a_bad_secret_file_is_a_one_line_config_error(
    tmp_path: Path, secret: bytes | None, says: str
) -> None:
    """A missing or short secret file stops `run` at start: exit 2, one line naming the key."""
    config = _config(tmp_path, "mlflow+http://127.0.0.1:9/ranker", "file:///srv", secret=b"x")
    if secret is None:
        (tmp_path / "secret").unlink()
    else:
        (tmp_path / "secret").write_bytes(secret)
    listen = f"127.0.0.1:{free_port()}"
    done = run_cli("run", "--config", str(config), "--listen", listen, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "admin.mlflow_webhook_secret_file" in done.stderr and says in done.stderr


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: os.mkfifo(p), "a FIFO"),
        (lambda p: p.symlink_to("/dev/zero"), "a character device"),
        (lambda p: p.write_bytes(b"s" * (SECRET_LIMIT + 1)), "more than"),
    ],
    ids=["fifo", "link-to-dev-zero", "too-large"],
)
def test_a_secret_file_that_could_block_or_flood_is_a_config_error(
    tmp_path: Path, make: Callable[[Path], object], says: str
) -> None:
    """A secret file that is a FIFO (the read would block `run` for good), a device or
    a huge file: exit 2 at once, one line naming the key and what is wrong."""
    config = _config(tmp_path, "mlflow+http://127.0.0.1:9/ranker", "file:///srv")
    (tmp_path / "secret").unlink()
    make(tmp_path / "secret")
    listen = f"127.0.0.1:{free_port()}"
    done = run_cli("run", "--config", str(config), "--listen", listen, timeout=30)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "admin.mlflow_webhook_secret_file" in lines[0] and says in lines[0], lines


def test_a_secret_behind_secret_volume_links_is_read(tmp_path: Path) -> None:
    """A Kubernetes Secret volume (secret -> ..data/secret) is followed to the file."""
    volume = tmp_path / "vol"
    (volume / "..2026_1").mkdir(parents=True)
    (volume / "..2026_1" / "secret").write_bytes(SECRET + b"\n")
    (volume / "..data").symlink_to("..2026_1")
    (volume / "secret").symlink_to("..data/secret")
    assert read_secret(volume / "secret") == SECRET


def test_probes_answer_while_40_clients_trickle_webhook_bodies(
    tmp_path: Path, bucket: Path, procs: list[DaemonProcess]
) -> None:
    """Red team finding 11 on a real daemon: 40 clients send a whole POST
    /webhooks/mlflow header announcing a full-size body, then trickle it a byte at a
    time, reconnecting when dropped. /healthz and /readyz keep answering 200 at once,
    and a signed delivery sent meanwhile is still answered 202."""
    import socket
    import threading

    put_revision(bucket, 1, model_files(1))
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    config = tmp_path / "modelsync.toml"
    config.write_text(
        f'store = "{tmp_path / "store"}"\ninterval = "1h"\n[admin]\n'
        f'mlflow_webhook_secret_file = "{tmp_path / "secret"}"\n'
        f'[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
    )
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_http()
    deadline = time.monotonic() + 30
    while daemon.http("GET", "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.2)
    stop = threading.Event()
    head = f"POST /webhooks/mlflow HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n"

    def trickle() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
                    sock.sendall(head.encode())
                    while not stop.wait(0.5):
                        sock.sendall(b"{")
            except OSError:
                stop.wait(0.2)  # dropped: connect again

    tricklers = [threading.Thread(target=trickle) for _ in range(40)]
    try:
        for thread in tricklers:
            thread.start()
        time.sleep(1)
        statuses = []
        # Past one whole-request deadline, so dropped tricklers have reconnected.
        for _ in range(8):
            for path in ("/healthz", "/readyz"):
                started = time.monotonic()
                statuses.append(daemon.http("GET", path, timeout=3)[0])
                assert time.monotonic() - started < 1.0
            time.sleep(0.5)
        assert statuses == [200] * 16
        event = _alias_event("ranker")
        delivered = _post(daemon.port, event, _signed(event))
    finally:
        stop.set()
        for thread in tricklers:
            thread.join(10)
    assert delivered == (202, {"queued": [], "action": "created"})
    assert daemon.http("GET", "/healthz")[0] == 200
