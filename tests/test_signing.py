"""Signed revisions: keygen, signed publish, verified sync; tampering and foreign keys refused
before any file is downloaded, the store unchanged."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from modelsync.errors import PublishError
from modelsync.manifest import MANIFEST_NAME
from modelsync.signing import generate_keypair, load_private_key, load_public_key, sign, verify
from tests.helpers import model_files, run_cli, snapshot, write_tree


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    """PEM files; the private key is mode 0600; existing keys are never overwritten."""
    out = run_cli("keygen", str(tmp_path / "k.pem"), str(tmp_path / "k.pub"))
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert (tmp_path / "k.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    key = load_private_key(tmp_path / "k.pem")
    assert verify([load_public_key(tmp_path / "k.pub")], b"data", sign(key, b"data"))
    assert not verify([load_public_key(tmp_path / "k.pub")], b"datA", sign(key, b"data"))
    with pytest.raises(PublishError, match="already exists"):
        generate_keypair(tmp_path / "k.pem", tmp_path / "other.pub")
    assert run_cli("keygen", str(tmp_path / "k.pem"), str(tmp_path / "x.pub")).returncode == 1


class Signed:
    """A bucket, two key pairs, and a config that requires signatures by the first."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.bucket = tmp_path / "bucket" / "ranker"
        self.store = tmp_path / "store"
        for name in ("ours", "theirs"):
            generate_keypair(tmp_path / f"{name}.pem", tmp_path / f"{name}.pub")
        self.config = tmp_path / "modelsync.toml"
        self.config.write_text(
            f'store = "{self.store}"\n[[models]]\nname = "ranker"\n'
            f'source = "file://{self.bucket}"\n[models.verify]\n'
            f'public_keys = ["{tmp_path / "theirs.pub"}", "{tmp_path / "ours.pub"}"]\n'
            "require_signature = true\n"
        )

    def publish(self, version: int, key: str | None = "ours") -> None:
        src = write_tree(self.tmp / f"src{version}", model_files(version))
        extra = ["--sign-key", str(self.tmp / f"{key}.pem")] if key else []
        out = run_cli(
            "publish", str(src), f"file://{self.bucket}", "--version", str(version), *extra
        )
        assert out.returncode == 0, out.stderr

    def sync(self) -> tuple[int, str]:
        out = run_cli("sync", "--config", str(self.config))
        return out.returncode, out.stderr


def test_signed_publish_then_verified_sync(tmp_path: Path) -> None:
    """A revision signed by a configured key syncs; the store copy verifies with the key."""
    signed = Signed(tmp_path)
    signed.publish(1)
    assert (signed.bucket / "1" / "modelsync-manifest.sig").stat().st_size == 64
    code, err = signed.sync()
    assert code == 0, err
    served = signed.store / "ranker" / "1"
    out = run_cli(
        "verify",
        str(served),
        "--public-key",
        str(tmp_path / "theirs.pub"),
        "--public-key",
        str(tmp_path / "ours.pub"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == (
        f"{served}: signature: valid (key {tmp_path / 'ours.pub'})"
    )
    out = run_cli("verify", str(served))
    assert out.stdout.splitlines()[-1] == (
        f"{served}: signature: not checked (give --public-key PEM to check it)"
    )
    out = run_cli(
        "verify", str(signed.store / "ranker" / "1"), "--public-key", str(tmp_path / "theirs.pub")
    )
    assert out.returncode == 1 and "does not match" in out.stderr


@pytest.mark.parametrize("attack", ["file byte", "manifest byte", "other key", "unsigned"])
def test_tampered_or_foreign_revisions_are_refused(tmp_path: Path, attack: str) -> None:
    """One changed byte anywhere, another key, or no signature: refused, store unchanged."""
    signed = Signed(tmp_path)
    signed.publish(1)
    assert signed.sync()[0] == 0
    before = snapshot(signed.store / "ranker")
    if attack == "other key":
        tmp_path.joinpath("theirs.pub").unlink()
        generate_keypair(tmp_path / "stranger.pem", tmp_path / "stranger.pub")
        signed.publish(2, key="stranger")
    else:
        signed.publish(2, key=None if attack == "unsigned" else "ours")
    if attack == "file byte":
        path = signed.bucket / "2" / "saved_model.pb"
        data = bytearray(path.read_bytes())
        data[0] ^= 1
        path.write_bytes(bytes(data))
    elif attack == "manifest byte":
        path = signed.bucket / "2" / MANIFEST_NAME
        doc = json.loads(path.read_bytes())
        doc["metrics"] = {"ndcg@10": 0.99}  # a forged score, still valid JSON
        path.write_text(json.dumps(doc))
    if attack == "other key":
        signed.config.write_text(
            signed.config.read_text().replace(f'"{tmp_path / "theirs.pub"}", ', "")
        )
    code, err = signed.sync()
    assert code == 1
    assert snapshot(signed.store / "ranker") == before
    refused = json.loads(run_cli("status", "--json", "--config", str(signed.config)).stdout)
    reason = refused["models"][0]["refused"]["2"]
    expected = {
        "file byte": "sha256",
        "manifest byte": "signature does not match",
        "other key": "signature does not match",
        "unsigned": "unsigned",
    }[attack]
    assert expected in reason
    if attack != "file byte":
        assert '"event": "downloading"' not in err  # refused before any download


def test_bad_public_key_path_is_a_config_error(tmp_path: Path) -> None:
    """A missing or malformed public key exits 2 naming the key."""
    config = tmp_path / "c.toml"
    (tmp_path / "junk.pub").write_text("not a key")
    for key in (tmp_path / "missing.pub", tmp_path / "junk.pub"):
        config.write_text(
            f'store = "{tmp_path}/s"\n[[models]]\nname = "m"\n'
            f'source = "file:///b"\n[models.verify]\npublic_keys = ["{key}"]\n'
        )
        out = run_cli("sync", "--config", str(config))
        assert out.returncode == 2
        assert "models[0].verify" in out.stderr and str(key) in out.stderr


def test_keygen_refuses_one_file_for_both_keys(tmp_path: Path) -> None:
    """`keygen K K` would overwrite the private key with the public one: refused, nothing
    written (issue 11 finding 27)."""
    out = run_cli("keygen", str(tmp_path / "k"), str(tmp_path / "k"))
    assert out.returncode == 1 and "two files" in out.stderr
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.symlink_to(p.name), "loop of symbolic links"),
        (lambda p: os.mkfifo(p), "a FIFO"),
        (lambda p: p.symlink_to("/dev/zero"), "a character device"),
    ],
    ids=["link-loop", "fifo", "link-to-dev-zero"],
)
def test_a_public_key_that_could_block_or_loop_is_a_config_error(
    tmp_path: Path, make: Callable[[Path], object], says: str
) -> None:
    """A public key file that is a loop of links (Path.resolve() raised RuntimeError),
    a FIFO or a device: exit 2 at once, one line naming the key and what is wrong."""
    key = tmp_path / "release.pub"
    make(key)
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{tmp_path}/s"\n[[models]]\nname = "m"\n'
        f'source = "file:///b"\n[models.verify]\npublic_keys = ["{key}"]\n'
    )
    out = run_cli("sync", "--config", str(config), timeout=30)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(key) in lines[0] and says in lines[0], lines


def test_a_public_key_behind_secret_volume_links_loads(tmp_path: Path) -> None:
    """A Kubernetes Secret volume (release.pub -> ..data/release.pub) is followed."""
    generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    volume = tmp_path / "secret"
    (volume / "..2026_1").mkdir(parents=True)
    (tmp_path / "k.pub").rename(volume / "..2026_1" / "release.pub")
    (volume / "..data").symlink_to("..2026_1")
    (volume / "release.pub").symlink_to("..data/release.pub")
    assert load_public_key(volume / "release.pub") is not None
