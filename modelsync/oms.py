"""OpenSSF Model Signing (OMS v1.0) signatures: ``model.sig`` bundles, read and made.

A ``model.sig`` is a Sigstore bundle whose DSSE envelope carries an in-toto
statement listing every file of the model with its digest. modelsync parses and
verifies it with the ``model-signing`` package (the reference implementation) from
the bundle's bytes alone: the signed file list comes out of the signature, so no
file of the revision is fetched before the signature holds — the same order as
with modelsync's own signed manifest.

Methods: ``key`` (ECDSA P-256/384/521 public keys) and ``certificate`` (an X.509
chain to a configured root, every certificate valid *now*: the reference verifier
checks the chain at the signing certificate's start date, which would keep an
expired or long-revoked signer valid for ever). Sigstore keyless bundles need a
trust root fetched online and are refused with a reason.

``model-signing`` costs about a second to import: only passes that verify or
produce a ``model.sig`` import it.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from modelsync.errors import ConfigError, ManifestError, PublishError, RefusedError, StoreError
from modelsync.fsutil import read_regular
from modelsync.manifest import (
    MAX_FILES,
    MAX_MANIFEST_BYTES,
    OMS_NAME,
    FileEntry,
    check_relpath,
)

__all__ = [
    "MAX_BUNDLE_BYTES",
    "OMS_NAME",
    "SignedFiles",
    "check_files",
    "check_public_key",
    "check_roots",
    "expected_subject",
    "key_kind",
    "sign",
    "verify",
]

# A statement of MAX_FILES files fits (about 13 MB); a bigger bundle is refused unread.
MAX_BUNDLE_BYTES = MAX_MANIFEST_BYTES
# Files the reference signer leaves out of a signature by default (git metadata):
# listed by the statement's ignore_paths, they are never part of a revision here.
_SIGNER_IGNORES = (OMS_NAME, ".git", ".gitattributes", ".github", ".gitignore")


@dataclass(frozen=True)
class SignedFiles:
    """What a verified ``model.sig`` says: the statement's subject name, every file's
    sha256 by relative path, and who signed it (for logs and the status page)."""

    subject: str
    files: Mapping[str, str]
    signer: str

    def fingerprint(self) -> str:
        """sha256 of the sorted (path, digest) list: equal for two statements that sign
        the same files with the same bytes, whatever their names or signers."""
        listed = json.dumps(sorted(self.files.items()), separators=(",", ":"))
        return hashlib.sha256(listed.encode()).hexdigest()


def expected_subject(template: str, model: str, version: int) -> str:
    """The subject name a revision's statement must carry ("" when not checked)."""
    return template.replace("{model}", model).replace("{version}", str(version))


def verify(
    bundle: bytes,
    where: str,
    *,
    keys: Sequence[Path] = (),
    roots: Sequence[Path] = (),
    subject: str = "",
    subject_hint: str = "verify.oms_subject",
    now: datetime | None = None,
) -> SignedFiles:
    """Verify ``bundle`` under any of ``keys`` (key method) or chained to ``roots``
    (certificate method); RefusedError (one line starting with ``where``) if it does
    not hold, names a file unsafely, or its subject is not ``subject`` (when set;
    ``subject_hint`` closes that line: what the operator should do)."""
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise RefusedError(f"{where}: bundle is over {MAX_BUNDLE_BYTES} bytes")
    from model_signing._signing import sign_sigstore_pb

    try:
        parsed = json.loads(bundle)
        material = parsed["verificationMaterial"]
        if not isinstance(material, dict):
            raise TypeError("verificationMaterial is not an object")
        # Keyless first: its material does not parse as the key and certificate kinds.
        if "certificate" in material or material.get("tlogEntries"):
            raise RefusedError(
                f"{where}: a Sigstore keyless signature; modelsync verifies the key and "
                "certificate methods only (keyless needs an online trust root)"
            )
        signature = sign_sigstore_pb.Signature.read(cast(pathlib.Path, _Text(bundle)))
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise RefusedError(f"{where}: not a Sigstore bundle ({_short(exc)})") from None
    if "x509CertificateChain" in material:
        signed, signer = _verify_certificate(signature, where, roots, now or datetime.now(UTC))
    else:
        signed, signer = _verify_key(signature, where, keys)
    return _signed_files(signed, where, subject, subject_hint, signer)


def check_files(signed: SignedFiles, entries: Sequence[FileEntry], where: str) -> None:
    """RefusedError unless ``entries`` are exactly the signed files with their digests."""
    listed = {e.path: e.sha256 for e in entries}
    for path in sorted(listed.keys() - signed.files.keys())[:1]:
        raise RefusedError(f"{where}: {path}: present but not signed in {OMS_NAME}")
    for path in sorted(signed.files.keys() - listed.keys())[:1]:
        raise RefusedError(f"{where}: {path}: signed in {OMS_NAME} but missing")
    for path, sha256 in sorted(listed.items()):
        if signed.files[path] != sha256:
            raise RefusedError(f"{where}: {path}: sha256 differs from the one signed")


class _Text:
    """The bundle's bytes where the reference reader expects a file: it parses text
    from ``read_text`` only, and a bundle from a bucket has no business on disk."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read_text(self, encoding: str = "utf-8") -> str:
        return self._data.decode(encoding)


def _verify_key(signature: Any, where: str, keys: Sequence[Path]) -> tuple[Any, str]:
    if not keys:
        raise RefusedError(f"{where}: signed with a key, and no verify.oms_keys are configured")
    from model_signing._signing import sign_ec_key

    for path in keys:
        try:
            return sign_ec_key.Verifier(path).verify(signature), f"key {path}"
        except Exception:  # noqa: S112 - any failure means "not this key"; the next is tried
            continue
    raise RefusedError(
        f"{where}: signature does not verify under any of verify.oms_keys "
        "(tampered with, or signed by another key)"
    )


def _verify_certificate(
    signature: Any, where: str, roots: Sequence[Path], now: datetime
) -> tuple[Any, str]:
    if not roots:
        raise RefusedError(
            f"{where}: signed with a certificate, and no verify.oms_roots are configured"
        )
    from cryptography import x509
    from model_signing._signing import sign_certificate

    chain = signature.bundle.verification_material.x509_certificate_chain.certificates
    try:
        certs = [x509.load_der_x509_certificate(c.raw_bytes) for c in chain]
        anchors = x509.load_pem_x509_certificates(b"".join(_read_pem(p) for p in roots))
    except (ValueError, OSError, StoreError) as exc:
        raise RefusedError(f"{where}: certificate chain unreadable ({_short(exc)})") from None
    if not certs:
        raise RefusedError(f"{where}: certificate chain is empty")
    for cert in [*certs, *anchors]:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise RefusedError(
                f"{where}: certificate {cert.subject.rfc4514_string()} is not valid now "
                f"(valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                f"{cert.not_valid_after_utc:%Y-%m-%d})"
            )
    try:
        verifier = sign_certificate.Verifier(list(roots))
        manifest = verifier.verify(signature)
    except Exception as exc:
        raise RefusedError(
            f"{where}: certificate signature does not hold under verify.oms_roots ({_short(exc)})"
        ) from None
    return manifest, f"certificate {certs[0].subject.rfc4514_string()}"


def _signed_files(
    manifest: Any, where: str, subject: str, subject_hint: str, signer: str
) -> SignedFiles:
    params = manifest.serialization_type
    if params.get("method") != "files" or params.get("hash_type") != "sha256":
        raise RefusedError(
            f"{where}: serialization {params.get('method')}/{params.get('hash_type')}; "
            "modelsync reads files/sha256 only"
        )
    if subject and manifest.model_name != subject:
        raise RefusedError(
            f"{where}: signs {manifest.model_name!r}, not {subject!r} ({subject_hint})"
        )
    files: dict[str, str] = {}
    for descriptor in manifest.resource_descriptors():
        if len(files) >= MAX_FILES:
            raise RefusedError(f"{where}: signs more than {MAX_FILES} files")
        try:
            path = check_relpath(descriptor.identifier, where)
        except ManifestError as exc:
            raise RefusedError(str(exc)) from None
        if path.split("/")[0] in _SIGNER_IGNORES:
            raise RefusedError(f"{where}: signs {path!r}, a name reserved in a revision")
        files[path] = descriptor.digest.digest_hex
    if not files:
        raise RefusedError(f"{where}: signs no file")
    return SignedFiles(manifest.model_name, files, signer)


def sign(
    entries: Sequence[FileEntry],
    subject: str,
    key: Path,
    *,
    certificate: Path | None = None,
    chain: Sequence[Path] = (),
) -> bytes:
    """A ``model.sig`` over ``entries`` (their sha256 already computed by the
    publisher: nothing is hashed twice), by ``key`` alone or with its certificate."""
    from model_signing import manifest as oms_manifest
    from model_signing._hashing import hashing
    from model_signing._signing import sign_certificate, sign_ec_key, signing

    items: list[oms_manifest.ManifestItem] = [
        oms_manifest.FileManifestItem(
            path=pathlib.PurePosixPath(e.path),
            digest=hashing.Digest("sha256", bytes.fromhex(e.sha256)),
        )
        for e in entries
    ]
    # What the reference signer records, so its verifier recomputes the same list.
    serialization = oms_manifest._FileSerialization(
        "sha256", False, [pathlib.Path(n) for n in _SIGNER_IGNORES]
    )
    try:
        signer: Any = (
            sign_certificate.Signer(key, certificate, chain)
            if certificate is not None
            else sign_ec_key.Signer(key)
        )
    except (OSError, ValueError, TypeError) as exc:
        raise PublishError(f"{key}: cannot sign in OMS format ({_short(exc)})") from exc
    payload = signing.Payload(oms_manifest.Manifest(subject, items, serialization))
    text: str = signer.sign(payload).bundle.to_json()
    return text.encode()


def key_kind(path: Path) -> str:
    """ "ed25519" or "ec" for a PEM private key (publish chooses the format by it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = serialization.load_pem_private_key(_read_pem(path), password=None)
    except (OSError, ValueError, TypeError, StoreError) as exc:
        raise PublishError(f"{path}: not a readable, unencrypted PEM private key ({exc})") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec"
    raise PublishError(f"{path}: neither an Ed25519 nor an EC (P-256/384/521) key")


def check_public_key(path: Path) -> None:
    """ConfigError unless ``path`` is a PEM EC public key on a curve OMS allows."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(_read_pem(path))
    except (OSError, ValueError, StoreError) as exc:
        raise ConfigError(f"{path}: not a readable PEM public key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise ConfigError(f"{path}: not an EC P-256, P-384 or P-521 public key")


def check_roots(path: Path) -> None:
    """ConfigError unless ``path`` holds at least one PEM certificate."""
    from cryptography import x509

    try:
        if not x509.load_pem_x509_certificates(_read_pem(path)):
            raise ValueError("no certificate")
    except (OSError, ValueError, StoreError) as exc:
        raise ConfigError(f"{path}: not a readable PEM certificate file ({exc})") from exc


# A PEM key or a few certificates; a root bundle of a whole CA store is under this too.
PEM_LIMIT = 1 << 20


def _read_pem(path: Path) -> bytes:
    """A key or certificate file the config names, read as every planted file is
    (fsutil.read_regular: never a FIFO or a device, within a limit), links followed:
    they are the operator's own (a Kubernetes Secret volume is made of links)."""
    return read_regular(path, PEM_LIMIT, follow_links=True)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
