"""The deadline layer over what comes before the first request: an SDK's first
credential lookup (botocore's container endpoint, google-auth's metadata server) and
the name lookup. Each ends the pass at pass_timeout, and a model stuck in one holds
neither the daemon's other models nor its SIGTERM."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.backends import S3_ENV, S3Backend, no_aws_credentials
from tests.daemonproc import DaemonProcess
from tests.dripproxy import DripProxy, Stall
from tests.helpers import REPO, model_files, run_cli, write_tree

PASS_TIMEOUT = 3.0
# The child's start-up (imports) and the watcher's next look, past the deadline.
SLACK = 3.0


def _drip() -> DripProxy:
    """An endpoint that answers 200 at once, then one body byte every half second:
    no per-read timeout ever trips on it."""
    return DripProxy(None, Stall(mode="body", every=(0.5, 0.5))).start()


def _discovery_env(kind: str, endpoint: str, tmp_path: Path) -> dict[str, str]:
    if kind == "s3":
        # EKS Pod Identity / ECS: botocore loads the first credentials as it makes
        # the client.
        return {
            **no_aws_credentials(tmp_path),
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{endpoint}/v1/credentials",
        }
    # No key file, no gcloud login: google-auth pings the metadata server.
    empty = tmp_path / "gcloud"
    empty.mkdir()
    host = endpoint.removeprefix("http://")
    return {
        "GOOGLE_APPLICATION_CREDENTIALS": "",
        "CLOUDSDK_CONFIG": str(empty),
        "STORAGE_EMULATOR_HOST": "",
        "GCE_METADATA_HOST": host,
        "GCE_METADATA_IP": host,
    }


@pytest.mark.parametrize("kind", ["s3", "gs"])
def test_a_dripping_credential_endpoint_ends_the_first_pass_at_its_deadline(
    tmp_path: Path, kind: str
) -> None:
    """The first credential lookup (not a refresh) against an endpoint that drips:
    `modelsync sync` ends at pass_timeout with one line and exit 1 (it ran past 40 s:
    botocore's and google-auth's own sessions time each read, not the request)."""
    endpoint = _drip()
    source = {"s3": "s3://b-drip/models/ranker", "gs": "gs://b-drip/models/ranker"}[kind]
    config = tmp_path / "c.toml"
    options = '[models.source_options]\nendpoint_url = "http://127.0.0.1:9"\n'
    config.write_text(
        f'store = "{tmp_path / "models"}"\npass_timeout = "{PASS_TIMEOUT:g}s"\n'
        f'[[models]]\nname = "ranker"\nsource = "{source}"\n' + (options if kind == "s3" else "")
    )
    started = time.monotonic()
    try:
        env = _discovery_env(kind, endpoint.url, tmp_path)
        out = run_cli("sync", "--config", str(config), env=env, timeout=60)
    finally:
        endpoint.stop()
    elapsed = time.monotonic() - started
    print(f"{kind}: {elapsed:.1f} s, asked {endpoint.stalled}: {out.stderr.strip()}")
    assert endpoint.stalled, "the credential chain never asked the dripping endpoint"
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pass deadline exceeded" in lines[0], out.stderr
    assert elapsed < PASS_TIMEOUT + SLACK, elapsed


def test_a_model_stuck_on_its_credentials_holds_neither_the_others_nor_sigterm(
    tmp_path: Path, s3_backend: S3Backend
) -> None:
    """A daemon with two S3 models: one whose credentials come from a dripping
    container endpoint, one with a profile's static keys. The second is served, and
    SIGTERM ends the daemon in under 5 s (it used to wait forever: the first model's
    client was made under the lock every client and close() take)."""
    publish = run_cli(
        "publish",
        str(write_tree(tmp_path / "src", model_files(1))),
        s3_backend.url,
        "--version",
        "1",
        *("--source-option", f"endpoint_url={s3_backend.endpoint}"),
        env=S3_ENV,
    )
    assert publish.returncode == 0, publish.stderr
    profile = tmp_path / "aws-config"
    profile.write_text(
        "[profile static]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    store = tmp_path / "store"
    endpoint = s3_backend.endpoint
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{store}"\ninterval = "2s"\npass_timeout = "{PASS_TIMEOUT:g}s"\n'
        f'[[models]]\nname = "stuck"\nsource = "s3://{s3_backend.bucket}/models/stuck"\n'
        f'[models.source_options]\nendpoint_url = "{endpoint}"\n'
        f'[[models]]\nname = "ranker"\nsource = "{s3_backend.url}"\n'
        f'[models.source_options]\nendpoint_url = "{endpoint}"\nprofile = "static"\n'
    )
    drip = _drip()
    env = {
        **no_aws_credentials(tmp_path),
        "AWS_CONFIG_FILE": str(profile),
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{drip.url}/v1/credentials",
    }
    proc = DaemonProcess(["--config", str(config)], tmp_path / "log", env=env)
    try:
        proc.wait_http()
        served = store / "ranker" / "current"
        deadline = time.monotonic() + 20
        while not served.is_symlink() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served.is_symlink(), "the model with static credentials was never served"
        assert drip.stalled, "the stuck model never asked its credential endpoint"
        started = time.monotonic()
        code = proc.stop(timeout=15)
        took = time.monotonic() - started
    finally:
        proc.stop(timeout=1)
        drip.stop()
    print(f"SIGTERM: exit {code} after {took:.1f} s")
    assert code == 0
    assert took < 5, took


class _SilentNameServer:
    """A UDP port 53 on a loopback address that reads every query and answers none."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for last in range(2, 250):
            try:
                self.sock.bind((f"127.0.53.{last}", 53))
                break
            except OSError:
                continue
        self.host = str(self.sock.getsockname()[0])

    def close(self) -> None:
        self.sock.close()


_UNSHARE = shutil.which("unshare")
_SH = shutil.which("sh") or "/bin/sh"


def _unshare_works() -> bool:
    if _UNSHARE is None or os.geteuid() != 0:
        return False
    return subprocess.run([_UNSHARE, "-m", _SH, "-c", "true"], check=False).returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs root to give a child its own resolv.conf")
@pytest.mark.parametrize("kind", ["s3", "gs"])
def test_a_silent_name_server_ends_the_pass_at_its_deadline(tmp_path: Path, kind: str) -> None:
    """The store's host name needs a lookup and the name server never answers (the
    child's own mount namespace names it in /etc/resolv.conf): `sync` ends at
    pass_timeout, not after the resolver's 5 s per try (10.5-11 s with 3 s)."""
    server = _SilentNameServer()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {server.host}\noptions timeout:5 attempts:2\n")
    source, option = {
        "s3": ("s3://models/ranker", 'endpoint_url = "http://minio.storage.invalid:9000"'),
        "gs": ("gs://models/ranker", 'endpoint = "http://gcs.storage.invalid:4443"'),
    }[kind]
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{tmp_path / "models"}"\npass_timeout = "{PASS_TIMEOUT:g}s"\n'
        f'[[models]]\nname = "ranker"\nsource = "{source}"\n'
        f"[models.source_options]\n{option}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSYNC_", "AWS_"))}
    env.update({**S3_ENV, "AWS_EC2_METADATA_DISABLED": "true", "STORAGE_EMULATOR_HOST": ""})
    command = (
        f"mount --bind {resolv} /etc/resolv.conf && "
        f"exec {sys.executable} -m modelsync sync --config {config}"
    )
    started = time.monotonic()
    try:
        out = subprocess.run(
            [str(_UNSHARE), "-m", _SH, "-c", command],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=60,
            check=False,
        )
    finally:
        server.close()
    elapsed = time.monotonic() - started
    print(f"{kind}: exit {out.returncode} after {elapsed:.1f} s: {out.stderr.strip()[-300:]}")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pass deadline exceeded" in lines[0], out.stderr
    assert elapsed < PASS_TIMEOUT + SLACK, elapsed
