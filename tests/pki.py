"""A small PKI for signing tests: EC keys, a root, an intermediate and leaf
certificates with chosen validity, written as PEM files (the `cryptography` package)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CURVES: dict[str, ec.EllipticCurve] = {
    "p256": ec.SECP256R1(),
    "p384": ec.SECP384R1(),
    "p521": ec.SECP521R1(),
}


def ec_key(directory: Path, name: str, curve: str = "p256") -> tuple[Path, Path]:
    """A new EC key pair as PEM files ``<name>.pem`` (private) and ``<name>.pub``."""
    key = ec.generate_private_key(CURVES[curve])
    private, public = directory / f"{name}.pem", directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@dataclass
class Issued:
    key: Path
    cert: Path
    _key: ec.EllipticCurvePrivateKey
    _cert: x509.Certificate


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def issue(
    directory: Path,
    name: str,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    not_before: datetime | None = None,
    days: int = 30,
) -> Issued:
    """A certificate ``<name>.crt`` for a new key ``<name>.pem``, signed by ``issuer``
    (self-signed when None); a CA, or a code-signing leaf."""
    key_path, _ = ec_key(directory, name)
    key = _load_key(key_path)
    start = not_before or datetime.now(UTC) - timedelta(days=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer._cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    signer = issuer._key if issuer else key
    cert = builder.sign(signer, hashes.SHA256())
    cert_path = directory / f"{name}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(key_path, cert_path, key, cert)


@dataclass
class Pki:
    root: Issued
    intermediate: Issued
    leaf: Issued


def pki(directory: Path, *, leaf_start: datetime | None = None, leaf_days: int = 30) -> Pki:
    """root -> intermediate -> code-signing leaf, all in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    root = issue(directory, "root", ca=True, days=3650)
    intermediate = issue(directory, "intermediate", root, ca=True, days=365)
    leaf = issue(directory, "leaf", intermediate, not_before=leaf_start, days=leaf_days)
    return Pki(root, intermediate, leaf)
