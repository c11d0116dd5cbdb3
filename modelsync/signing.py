"""Ed25519 signatures over the exact manifest bytes (the `cryptography` package).

The publisher signs ``modelsync-manifest.json`` with a private key and uploads the
detached signature ``modelsync-manifest.sig`` (64 raw bytes) before the manifest.
A reader configured with public keys checks it before downloading any file; since
the manifest carries every file's sha256, the signature covers every byte.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from modelsync.errors import ConfigError, PublishError, StoreError
from modelsync.fsutil import read_regular

__all__ = ["KEY_TYPES", "generate_keypair", "load_private_key", "load_public_key", "sign", "verify"]


# keygen --type: Ed25519 signs modelsync manifests; the EC curves sign OpenSSF Model
# Signing bundles (the curves that format allows).
KEY_TYPES = ("ed25519", "p256", "p384", "p521")


def generate_keypair(private_path: Path, public_path: Path, kind: str = "ed25519") -> None:
    """Write a new key pair of ``kind`` (KEY_TYPES) as PEM: the private key readable by
    its owner only."""
    if private_path.resolve() == public_path.resolve():
        raise PublishError(f"{private_path}: the private and the public key need two files")
    for path in (private_path, public_path):
        if path.exists():
            raise PublishError(f"{path} already exists; refusing to overwrite a key")
    key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    if kind == "ed25519":
        key = Ed25519PrivateKey.generate()
    else:
        curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
        if kind not in curves:
            raise PublishError(f"key type {kind!r}: not one of {', '.join(KEY_TYPES)}")
        key = ec.generate_private_key(curves[kind])
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(public)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read_key(path), password=None)
    except (OSError, ValueError, TypeError, StoreError) as exc:
        raise PublishError(f"{path}: not a readable, unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise PublishError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(_read_key(path))
    except (OSError, ValueError, StoreError) as exc:
        raise ConfigError(f"{path}: not a readable PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify(keys: Sequence[Ed25519PublicKey], data: bytes, signature: bytes) -> bool:
    """True if any of ``keys`` (several during a rotation) made ``signature`` over ``data``."""
    for key in keys:
        try:
            key.verify(signature, data)
            return True
        except InvalidSignature:
            continue
    return False


# A PEM key is a few hundred bytes; a signature file a few KiB.
KEY_LIMIT = 64 << 10
SIGNATURE_LIMIT = 64 << 10


def _read_key(path: Path) -> bytes:
    """A key file's bytes: the operator's own links are followed to their end (a
    Kubernetes Secret volume is made of links), the end must be a small regular file
    (never a FIFO or a device that would block or flood). Followed by the open itself,
    not by Path.resolve(), which raises RuntimeError on a loop of links."""
    return read_regular(path, KEY_LIMIT, follow_links=True)
