"""`modelsync publish` (modelsync.publish): order on the wire, refusals, progress."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from modelsync.backends.gs import GcsOptions, GcsSource
from modelsync.errors import PublishError
from modelsync.manifest import MANIFEST_NAME
from modelsync.publish import publish
from modelsync.signing import generate_keypair
from tests.backends import GcsBackend
from tests.faultproxy import FaultProxy
from tests.helpers import model_files, write_tree


def test_manifest_is_uploaded_last_and_signature_before_it(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """Files first, then the signature, the manifest last (seen on the wire)."""
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    src = write_tree(tmp_path / "src", model_files(1))
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    version = publish(
        src,
        backend.url,
        version=5,
        sign_key=tmp_path / "k.pem",
        sources=lambda url, _options: GcsSource(url, GcsOptions(endpoint=fault_proxy.url)),
    )
    assert version == 5
    uploads = [
        body
        for (method, _), body in zip(fault_proxy.requests, fault_proxy.bodies, strict=True)
        if method == "POST"
    ]
    assert len(uploads) == 5  # three files, the signature, the manifest
    assert b"modelsync-manifest.sig" in uploads[-2]
    assert MANIFEST_NAME.encode() in uploads[-1]


def test_publish_refuses_overwrite_and_bad_input(tmp_path: Path) -> None:
    """An existing complete version, a missing directory, an empty one: PublishError."""
    bucket = tmp_path / "bucket" / "m"
    src = write_tree(tmp_path / "src", model_files(1))
    assert publish(src, f"file://{bucket}", version=1) == 1
    with pytest.raises(PublishError, match="already exists"):
        publish(src, f"file://{bucket}", version=1)
    with pytest.raises(PublishError, match="not a directory"):
        publish(tmp_path / "nope", f"file://{bucket}", version=2)
    assert publish(src, f"file://{bucket}", clock=lambda: 1_800_000_000.5) == 1_800_000_000


def test_publish_shows_a_bar_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal, publish draws the sync bar: model, version, percent and MB done."""
    src = write_tree(tmp_path / "src", {f"shard-{i}.bin": os.urandom(1_000_000) for i in range(4)})
    url = f"file://{tmp_path}/bucket/ranker"
    controller, terminal = os.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelsync", "publish", str(src), url, "--version", "5"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**env, "COLUMNS": "120"},
    )
    os.close(terminal)
    seen = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the child has exited
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    stdout, _ = proc.communicate(timeout=120)
    reader.join(10)
    os.close(controller)
    assert proc.returncode == 0, seen.decode(errors="replace")
    assert stdout == b"5\n"
    bar = seen.decode(errors="replace")
    assert "ranker v5" in bar and "100%" in bar and "4/4 MB" in bar


def test_publish_smoke_puts_the_file_in_the_signed_revision(tmp_path: Path) -> None:
    """--smoke uploads the file as modelsync-smoke.json, listed in the manifest (so the
    signature covers it); a smoke file that does not parse, or a directory that holds
    one already, is a one-line error and nothing is uploaded."""
    from tests.helpers import run_cli

    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    src = write_tree(tmp_path / "src", model_files(1))
    smoke = tmp_path / "smoke.json"
    smoke.write_bytes(b'{"format": 1, "requests": [{"body": {"instances": [1]}}]}')
    bucket = tmp_path / "bucket" / "ranker"
    url = f"file://{bucket}"
    out = run_cli(
        "publish", str(src), url, "--version", "5", "--smoke", str(smoke),
        "--sign-key", str(tmp_path / "k.pem"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (bucket / "5" / "modelsync-smoke.json").read_bytes() == smoke.read_bytes()
    assert "modelsync-smoke.json" in (bucket / "5" / MANIFEST_NAME).read_text()
    verified = run_cli("verify", str(bucket / "5"), "--public-key", str(tmp_path / "k.pub"))
    assert verified.returncode == 0, verified.stderr

    smoke.write_bytes(b'{"format": 1, "requests": []}')
    out = run_cli("publish", str(src), url, "--version", "6", "--smoke", str(smoke))
    assert out.returncode != 0
    assert "--smoke" in out.stderr and "requests" in out.stderr
    assert not (bucket / "6").exists()
    (src / "modelsync-smoke.json").write_bytes(b"{}")
    out = run_cli("publish", str(src), url, "--version", "7", "--smoke", str(smoke))
    assert out.returncode != 0 and "already holds modelsync-smoke.json" in out.stderr
