"""OpenSSF Model Signing (model.sig): revisions signed by the upstream `model_signing`
CLI are served, tampered ones refused before any payload byte leaves the bucket
(counted at the fault proxy), bundles modelsync makes verify upstream, and the
signature binds model and version unless the operator opts out."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelsync.errors import RefusedError
from modelsync.oms import OMS_NAME, verify
from tests.backends import GcsBackend
from tests.daemonproc import DaemonProcess
from tests.faultproxy import FaultProxy
from tests.helpers import model_files, run_cli, snapshot, write_tree
from tests.pki import ec_key, pki

UPSTREAM = Path(sys.executable).parent / "model_signing"
MODEL = "ranker"


def upstream(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the reference `model_signing` command in a child process."""
    return subprocess.run(
        [str(UPSTREAM), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def named(version: int) -> str:
    """The directory name the default verify.oms_subject expects for ``version``."""
    return f"{MODEL}-{version}"


def signed_tree(root: Path, seed: int, method: list[str | Path], name: str) -> Path:
    """A model directory named ``name`` signed in place by the upstream CLI (which
    names the statement's subject after the directory)."""
    tree = write_tree(root / f"src{seed}" / name, model_files(seed))
    out = upstream("sign", *method[:1], tree, *method[1:], "--signature", tree / OMS_NAME)
    assert out.returncode == 0, out.stderr
    return tree


class Keys:
    """An EC key pair, another one, and a PKI (root -> intermediate -> leaf)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.key, self.pub = ec_key(tmp, "ours")
        self.other_key, self.other_pub = ec_key(tmp, "theirs")
        self.pki = pki(tmp / "pki")

    def by_key(self, key: Path | None = None) -> list[str | Path]:
        return ["key", "--private_key", key or self.key]

    def by_cert(self) -> list[str | Path]:
        leaf = self.pki.leaf
        return [
            "certificate",
            "--private_key",
            leaf.key,
            "--signing_certificate",
            leaf.cert,
            "--certificate_chain",
            self.pki.intermediate.cert,
        ]

    def verify_toml(self) -> str:
        return (
            f'[models.verify]\noms_keys = ["{self.pub}"]\n'
            f'oms_roots = ["{self.pki.root.cert}"]\nrequire_signature = true\n'
        )


class FileBucket:
    """A file:// bucket and a config that requires OMS signatures."""

    def __init__(self, tmp: Path, keys: Keys) -> None:
        self.tmp, self.keys = tmp, keys
        self.bucket = tmp / "bucket" / MODEL
        self.store = tmp / "store"
        self.config = tmp / "modelsync.toml"
        self.config.write_text(
            f'store = "{self.store}"\n[[models]]\nname = "{MODEL}"\n'
            f'source = "file://{self.bucket}"\n' + keys.verify_toml()
        )

    def put(self, version: int, tree: Path) -> Path:
        target = self.bucket / str(version)
        shutil.copytree(tree, target)
        return target

    def sync(self) -> subprocess.CompletedProcess[str]:
        return run_cli("sync", "--config", str(self.config))

    def refused(self) -> dict[str, str]:
        out = run_cli("status", "--json", "--config", str(self.config))
        reasons: dict[str, str] = json.loads(out.stdout)["models"][0]["refused"]
        return reasons


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    """Fresh keys and a PKI for one test."""
    return Keys(tmp_path)


@pytest.mark.parametrize("curve", ["p256", "p384", "p521"])
def test_upstream_key_signed_revision_is_served(tmp_path: Path, keys: Keys, curve: str) -> None:
    """A revision signed with `model_signing sign key` (each OMS curve) syncs byte for byte."""
    keys.key, keys.pub = ec_key(tmp_path, f"k{curve}", curve)
    bucket = FileBucket(tmp_path, keys)
    tree = signed_tree(tmp_path, 1, keys.by_key(), named(7))
    bucket.put(7, tree)
    out = bucket.sync()
    assert out.returncode == 0, out.stderr
    served = bucket.store / MODEL / "7"
    for name, data in model_files(1).items():
        assert (served / name).read_bytes() == data
    assert (served / OMS_NAME).read_bytes() == (tree / OMS_NAME).read_bytes()


def test_upstream_certificate_signed_revision_is_served(tmp_path: Path, keys: Keys) -> None:
    """A revision signed with `model_signing sign certificate` (leaf + intermediate,
    chained to a configured root) syncs."""
    bucket = FileBucket(tmp_path, keys)
    bucket.put(3, signed_tree(tmp_path, 2, keys.by_cert(), named(3)))
    out = bucket.sync()
    assert out.returncode == 0, out.stderr
    served = bucket.store / MODEL / "3"
    files = sorted(p.relative_to(served).as_posix() for p in served.rglob("*") if p.is_file())
    assert files == sorted([*model_files(2), OMS_NAME, "modelsync-manifest.json"])
    assert "certificate CN=leaf" in out.stderr


def test_a_retained_copy_is_verified_again_under_todays_keys(tmp_path: Path, keys: Keys) -> None:
    """Admission re-verifies model.sig: once its key is removed from the config, a
    served OMS revision no longer passes a rollback to it."""
    bucket = FileBucket(tmp_path, keys)
    for version in (1, 2):
        bucket.put(version, signed_tree(tmp_path, version, keys.by_key(), named(version)))
        assert bucket.sync().returncode == 0
    bucket.config.write_text(bucket.config.read_text().replace(str(keys.pub), str(keys.other_pub)))
    out = run_cli("rollback", "--config", str(bucket.config), MODEL, "--to", "1")
    assert out.returncode == 1
    assert "oms_keys" in out.stderr
    assert (bucket.store / MODEL / "2").is_dir()


# ---- tampering, measured at the fault proxy in front of the GCS emulator ----

PAYLOAD = tuple(model_files(0))


def _tamper(case: str, tmp: Path, keys: Keys) -> dict[str, bytes]:
    """The objects of version 5 for one attack (names relative to the version)."""
    method = keys.by_key()
    if case == "expired certificate":
        old = pki(tmp / "old", leaf_start=datetime.now(UTC) - timedelta(days=40), leaf_days=10)
        keys.pki.root.cert.write_bytes(old.root.cert.read_bytes())
        method = [
            "certificate",
            "--private_key",
            old.leaf.key,
            "--signing_certificate",
            old.leaf.cert,
            "--certificate_chain",
            old.intermediate.cert,
        ]
    elif case == "untrusted certificate":
        stranger = pki(tmp / "stranger")
        method = [
            "certificate",
            "--private_key",
            stranger.leaf.key,
            "--signing_certificate",
            stranger.leaf.cert,
            "--certificate_chain",
            stranger.intermediate.cert,
        ]
    elif case == "wrong key":
        method = keys.by_key(keys.other_key)
    name = {"bundle for another model": "scorer-5", "signed v4 copied under v5": named(4)}
    tree = signed_tree(
        tmp / case.replace(" ", "-"),
        5,
        method,
        name.get(case, named(5)),
    )
    files = [p for p in tree.rglob("*") if p.is_file()]
    objects = {p.relative_to(tree).as_posix(): p.read_bytes() for p in files}
    if case == "extra file":
        objects["extra.bin"] = b"not signed"
    elif case == "missing file":
        del objects[PAYLOAD[0]]
    elif case == "flipped byte in model.sig":
        bundle = json.loads(objects[OMS_NAME])
        statement = bytearray(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        statement[statement.index(b'"digest": "') + 11] ^= 1
        bundle["dsseEnvelope"]["payload"] = base64.b64encode(bytes(statement)).decode()
        objects[OMS_NAME] = json.dumps(bundle).encode()
    elif case == "100,000 files":
        objects[OMS_NAME] = _huge_bundle(tmp, keys, 100_000)
    return objects


def _huge_bundle(tmp: Path, keys: Keys, count: int) -> bytes:
    """A bundle, properly signed by the configured key, listing ``count`` files."""
    from modelsync.manifest import FileEntry
    from modelsync.oms import sign

    entries = [FileEntry(f"shard/{i:06d}.bin", 1, f"{i:064x}") for i in range(count)]
    return sign(entries, named(5), keys.key)


CASES = {
    "extra file": "extra.bin: present but not signed",
    "missing file": "signed but missing",
    "flipped byte in model.sig": "does not verify under any of verify.oms_keys",
    "wrong key": "does not verify under any of verify.oms_keys",
    "expired certificate": "is not valid now",
    "untrusted certificate": "does not hold under verify.oms_roots",
    "bundle for another model": "signs 'scorer-5', not 'ranker-5'",
    "signed v4 copied under v5": (
        "signs 'ranker-4', not 'ranker-5' (verify.oms_subject binds model and version; "
        "sign the directory as ranker-5/)"
    ),
    "100,000 files": "larger than 16777216 bytes",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_revision_refused_before_any_payload_byte(
    tmp_path: Path, keys: Keys, gcs_bucket: str, fault_proxy: FaultProxy, case: str
) -> None:
    """Each attack on an OMS revision is refused with one line naming it, the store is
    untouched, and the proxy saw no request for a payload object."""
    backend = GcsBackend(fault_proxy.url, gcs_bucket, prefix=f"t/{MODEL}")
    for name, data in _tamper(case, tmp_path, keys).items():
        backend.put(f"5/{name}", data)
    store = tmp_path / "store"
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{store}"\n[[models]]\nname = "{MODEL}"\nsource = "{backend.url}"\n'
        + keys.verify_toml()
    )
    fault_proxy.reset_counts()
    out = run_cli("sync", "--config", str(config), env={"STORAGE_EMULATOR_HOST": fault_proxy.url})
    assert out.returncode == 1, out.stderr
    refusals = [line for line in out.stderr.splitlines() if '"refused"' in line or "refus" in line]
    assert refusals and CASES[case] in out.stderr, out.stderr
    fetched = [path for _method, path in fault_proxy.requests if "alt=media" in path]
    assert fetched and all(OMS_NAME in path for path in fetched), fetched
    assert snapshot(store / MODEL) == {}


def test_a_flipped_payload_byte_is_refused_and_never_served(tmp_path: Path, keys: Keys) -> None:
    """A payload file that differs from its signed digest can only be caught as it
    streams in: the download is refused and nothing reaches the store."""
    bucket = FileBucket(tmp_path, keys)
    target = bucket.put(4, signed_tree(tmp_path, 4, keys.by_key(), named(4)))
    data = bytearray((target / PAYLOAD[0]).read_bytes())
    data[len(data) // 2] ^= 1
    (target / PAYLOAD[0]).write_bytes(bytes(data))
    out = bucket.sync()
    assert out.returncode == 1
    assert "sha256" in bucket.refused()["4"]
    assert snapshot(bucket.store / MODEL) == {}


def test_verify_refuses_keyless_and_malformed_bundles(tmp_path: Path, keys: Keys) -> None:
    """A Sigstore keyless bundle and bytes that are no bundle are refused in one line."""
    keyless = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"certificate": {"rawBytes": "AA=="}, "tlogEntries": []},
        "dsseEnvelope": {"payload": "", "payloadType": "x", "signatures": []},
    }
    with pytest.raises(RefusedError, match="keyless"):
        verify(json.dumps(keyless).encode(), "m/1/model.sig", keys=[keys.pub])
    for junk in (b"", b"[1]", b"{", b'{"verificationMaterial": 3}', b"[" * 100_000):
        with pytest.raises(RefusedError, match=r"^m/1/model.sig: "):
            verify(junk, "m/1/model.sig", keys=[keys.pub])


# ---- modelsync as the signer ----


@pytest.mark.parametrize("method", ["key", "certificate"])
def test_modelsync_publish_verifies_upstream_and_syncs(
    tmp_path: Path, keys: Keys, method: str
) -> None:
    """`publish --sign-key EC [--sign-cert --sign-chain]` uploads files and model.sig
    (no manifest); the upstream `model_signing verify` accepts the revision as it lies
    in the bucket, and modelsync serves it."""
    bucket = FileBucket(tmp_path, keys)
    src = write_tree(tmp_path / "export", model_files(9))
    leaf = keys.pki.leaf
    sign = ["--sign-key", str(keys.key)]
    check: list[str | Path] = ["key", "--public_key", keys.pub]
    if method == "certificate":
        sign = ["--sign-key", str(leaf.key), "--sign-cert", str(leaf.cert)]
        sign += ["--sign-chain", str(keys.pki.intermediate.cert)]
        check = ["certificate", "--certificate_chain", keys.pki.root.cert]
    out = run_cli("publish", str(src), f"file://{bucket.bucket}", "--version", "9", *sign)
    assert out.returncode == 0, out.stderr
    revision = bucket.bucket / "9"
    assert sorted(p.name for p in revision.iterdir()) == sorted(
        {*(n.split("/")[0] for n in model_files(9)), OMS_NAME}
    )
    out = upstream("verify", *check[:1], revision, "--signature", revision / OMS_NAME, *check[1:])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Verification succeeded" in out.stdout
    synced = bucket.sync()
    assert synced.returncode == 0, synced.stderr
    assert (bucket.store / MODEL / "9" / PAYLOAD[0]).read_bytes() == model_files(9)[PAYLOAD[0]]


def test_upstream_verify_refuses_a_modelsync_bundle_after_tampering(
    tmp_path: Path, keys: Keys
) -> None:
    """The interop is real both ways: a byte changed in a file modelsync signed fails
    the upstream verifier."""
    src = write_tree(tmp_path / "export", model_files(3))
    bucket = tmp_path / "bucket" / MODEL
    out = run_cli(
        "publish", str(src), f"file://{bucket}", "--version", "3", "--sign-key", str(keys.key)
    )
    assert out.returncode == 0, out.stderr
    target = bucket / "3" / PAYLOAD[0]
    target.write_bytes(target.read_bytes() + b"!")
    out = upstream(
        "verify",
        "key",
        bucket / "3",
        "--signature",
        bucket / "3" / OMS_NAME,
        "--public_key",
        keys.pub,
    )
    assert out.returncode != 0
    assert "Verification failed" in out.stdout + out.stderr


@pytest.mark.parametrize("kind", ["p256", "p384", "p521"])
def test_keygen_makes_ec_keys_that_sign_model_sig(tmp_path: Path, kind: str) -> None:
    """`keygen --type` writes an EC pair (private key 0600) whose bundle verifies upstream."""
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    out = run_cli("keygen", "--type", kind, str(private), str(public))
    assert out.returncode == 0, out.stderr
    assert "verify.oms_keys" in out.stdout
    assert private.stat().st_mode & 0o777 == 0o600
    src = write_tree(tmp_path / "export", model_files(1))
    bucket = tmp_path / "bucket" / MODEL
    out = run_cli(
        "publish", str(src), f"file://{bucket}", "--version", "1", "--sign-key", str(private)
    )
    assert out.returncode == 0, out.stderr
    out = upstream(
        "verify",
        "key",
        bucket / "1",
        "--signature",
        bucket / "1" / OMS_NAME,
        "--public_key",
        public,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_publish_refuses_what_oms_cannot_carry(tmp_path: Path, keys: Keys) -> None:
    """Metrics with an EC key, a certificate without an EC key, and a certificate that
    is not the key's: one line, exit 1, nothing uploaded."""
    src = write_tree(tmp_path / "export", model_files(1))
    bucket = tmp_path / "bucket" / MODEL
    ed = tmp_path / "ed.pem"
    assert run_cli("keygen", str(ed), str(tmp_path / "ed.pub")).returncode == 0
    cases = {
        "--metric and --meta cannot": ["--sign-key", str(keys.key), "--metric", "auc=0.9"],
        "need an EC --sign-key": ["--sign-key", str(ed), "--sign-cert", str(keys.pki.leaf.cert)],
        "cannot sign in OMS format": [
            "--sign-key",
            str(keys.key),
            "--sign-cert",
            str(keys.pki.leaf.cert),
        ],
    }
    for expected, args in cases.items():
        out = run_cli("publish", str(src), f"file://{bucket}", "--version", "1", *args)
        assert out.returncode == 1, out.stderr
        assert expected in out.stderr
        assert not (bucket / "1").exists()


# ---- the upstream OMS v1.0 test vectors (tests/vectors/oms, see SOURCE.md) ----

VECTORS = Path(__file__).parent / "vectors" / "oms"
SERVED_VECTORS = [
    "v1.0.0-certificate",
    "v1.0.1-certificate",
    "v1.0.1-elliptic-key",
    "v1.1.0-certificate",
    "v1.1.0-elliptic-key",
]


def _vector_config(tmp: Path, bucket: Path, subject: str = "") -> Path:
    config = tmp / "vectors.toml"
    config.write_text(
        f'store = "{tmp / "store"}"\n[[models]]\nname = "{MODEL}"\n'
        f'source = "file://{bucket}"\n[models.verify]\n'
        f'oms_keys = ["{VECTORS / "keys" / "signing-key-pub.pem"}"]\n'
        f'oms_roots = ["{VECTORS / "keys" / "ca-cert.pem"}"]\n'
        f'oms_subject = "{subject}"\nrequire_signature = true\n'
    )
    return config


@pytest.mark.parametrize("vector", SERVED_VECTORS)
def test_upstream_vectors_are_served(tmp_path: Path, vector: str) -> None:
    """Each key and certificate vector of OMS v1.0.x and v1.1 syncs, its files intact."""
    bucket = tmp_path / "bucket" / MODEL
    shutil.copytree(VECTORS / vector, bucket / "1")
    out = run_cli("sync", "--config", str(_vector_config(tmp_path, bucket, vector)))
    assert out.returncode == 0, out.stderr
    for name in ("signme-1", "signme-2"):
        served = tmp_path / "store" / MODEL / "1" / name
        assert served.read_bytes() == (VECTORS / vector / name).read_bytes()


def test_upstream_vectors_verify_in_process_with_their_digests() -> None:
    """verify() of each vector's bundle yields exactly the sha256 of its files."""
    import hashlib

    for vector in SERVED_VECTORS:
        signed = verify(
            (VECTORS / vector / OMS_NAME).read_bytes(),
            vector,
            keys=[VECTORS / "keys" / "signing-key-pub.pem"],
            roots=[VECTORS / "keys" / "ca-cert.pem"],
            subject=vector,
        )
        assert signed.files == {
            name: hashlib.sha256((VECTORS / vector / name).read_bytes()).hexdigest()
            for name in ("signme-1", "signme-2")
        }


def test_upstream_vector_of_one_file_and_a_tampered_vector_are_refused(tmp_path: Path) -> None:
    """The single-file vector (a revision is a directory: refused before any fetch) and a
    certificate vector with a changed file (refused as it streams in) are refused."""
    bucket = tmp_path / "bucket" / MODEL
    shutil.copytree(VECTORS / "v1.0.0-elliptic-key", bucket / "1")
    shutil.copytree(VECTORS / "v1.1.0-certificate", bucket / "2")
    (bucket / "2" / "signme-1").write_bytes(b"changed")
    config = _vector_config(tmp_path, bucket)
    # Version 2 is refused as it streams in, and version 1 is tried in the same pass.
    assert run_cli("sync", "--config", str(config)).returncode == 1
    status = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)
    refused = status["models"][0]["refused"]
    assert "has an empty, '.' or '..' part" in refused["1"]
    assert "sha256" in refused["2"]
    assert not (tmp_path / "store" / MODEL / "1").exists()


def test_upstream_keyless_vector_is_refused_as_keyless() -> None:
    """The v1.1.0 Sigstore keyless vector is refused saying why (no offline trust root)."""
    with pytest.raises(RefusedError, match="Sigstore keyless signature"):
        verify(
            (VECTORS / "v1.1.0-sigstore" / OMS_NAME).read_bytes(),
            "v1.1.0-sigstore",
            keys=[VECTORS / "keys" / "signing-key-pub.pem"],
            roots=[VECTORS / "keys" / "ca-cert.pem"],
        )


# ---- model and version binding (verify.oms_subject) ----


def test_default_refuses_signed_v1_copied_under_v2_before_any_payload_byte(
    tmp_path: Path, keys: Keys, gcs_bucket: str, fault_proxy: FaultProxy
) -> None:
    """With the default oms_subject, revision 1 (signed as ranker-1) copied whole to
    version 2 is refused in one line that says what to do, with no payload request at
    the proxy; version 1 stays served and a properly signed version 3 is still taken."""
    backend = GcsBackend(fault_proxy.url, gcs_bucket, prefix=f"b/{MODEL}")
    v1 = signed_tree(tmp_path / "one", 1, keys.by_key(), named(1))
    objects = {p.relative_to(v1).as_posix(): p.read_bytes() for p in v1.rglob("*") if p.is_file()}
    for name, data in objects.items():
        backend.put(f"1/{name}", data)
    store = tmp_path / "store"
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{store}"\n[[models]]\nname = "{MODEL}"\nsource = "{backend.url}"\n'
        + keys.verify_toml()
    )
    env = {"STORAGE_EMULATOR_HOST": fault_proxy.url}
    first = run_cli("sync", "--config", str(config), env=env)
    assert first.returncode == 0, first.stderr
    for name, data in objects.items():
        backend.put(f"2/{name}", data)
    fault_proxy.reset_counts()
    out = run_cli("sync", "--config", str(config), env=env)
    assert out.returncode == 1, out.stderr
    fetched = [path for _method, path in fault_proxy.requests if "alt=media" in path]
    assert fetched and all(OMS_NAME in path for path in fetched), fetched
    status = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)["models"][0]
    assert status["refused"]["2"] == (
        f"{backend.url}/2/{OMS_NAME}: signs 'ranker-1', not 'ranker-2' (verify.oms_subject "
        "binds model and version; sign the directory as ranker-2/)"
    )
    assert status["active_version"] == 1
    assert status["verification"]["oms_version_bound"] is True
    assert status["verification"]["warning"] is None
    v3 = signed_tree(tmp_path / "three", 3, keys.by_key(), named(3))
    for path in sorted(v3.rglob("*"), key=lambda p: p.name == OMS_NAME):
        if path.is_file():
            backend.put(f"3/{path.relative_to(v3).as_posix()}", path.read_bytes())
    out = run_cli("sync", "--config", str(config), env=env)
    assert out.returncode == 0, out.stderr
    assert (store / MODEL / "3" / PAYLOAD[0]).read_bytes() == model_files(3)[PAYLOAD[0]]


def test_model_opt_out_serves_unbound_revisions_but_refuses_a_replay(
    tmp_path: Path, keys: Keys
) -> None:
    """With oms_subject = "{model}" (the opt-out), a revision signed as ranker is served;
    the same signed files under a newer number are refused as a replay of the version
    this host admitted, across restarts (each sync is a new process); a copy of a
    revision this host never admitted is not caught (what docs/signing.md says)."""
    bucket = FileBucket(tmp_path, keys)
    bucket.config.write_text(bucket.config.read_text() + 'oms_subject = "{model}"\n')
    first = signed_tree(tmp_path / "a", 1, keys.by_key(), MODEL)
    bucket.put(1, first)
    assert bucket.sync().returncode == 0
    bucket.put(2, first)
    out = bucket.sync()
    assert out.returncode == 1
    reason = bucket.refused()["2"]
    assert reason.startswith(f"file://{bucket.bucket}/2/{OMS_NAME}: replay of version 1: "), reason
    assert not (bucket.store / MODEL / "2").exists()
    # Neither 3 nor its copy 4 was ever admitted here: 4 is served (the limit of the
    # defence without a version in the signature).
    other = signed_tree(tmp_path / "b", 3, keys.by_key(), MODEL)
    bucket.put(3, other)
    bucket.put(4, other)
    assert bucket.sync().returncode == 0
    assert (bucket.store / MODEL / "4" / PAYLOAD[0]).read_bytes() == model_files(3)[PAYLOAD[0]]
    # Now 4 is admitted: its copy under 5 is a replay of 4.
    bucket.put(5, other)
    assert bucket.sync().returncode == 1
    assert "replay of version 4" in bucket.refused()["5"]
    status = json.loads(run_cli("status", "--json", "--config", str(bucket.config)).stdout)
    verification = status["models"][0]["verification"]
    assert verification["oms_subject"] == "{model}"
    assert verification["oms_version_bound"] is False
    assert "does not bind the version" in verification["warning"]


def test_model_opt_out_allows_a_rollback_to_its_own_admitted_revision(
    tmp_path: Path, keys: Keys
) -> None:
    """The replay check compares against *other* versions: `rollback --to` a retained
    unbound revision is admitted again (its own record matches)."""
    bucket = FileBucket(tmp_path, keys)
    bucket.config.write_text(bucket.config.read_text() + 'oms_subject = "{model}"\n')
    for version in (1, 2):
        bucket.put(version, signed_tree(tmp_path / str(version), version, keys.by_key(), MODEL))
        assert bucket.sync().returncode == 0
    out = run_cli("rollback", "--config", str(bucket.config), MODEL, "--to", "1")
    assert out.returncode == 0, out.stderr
    status = json.loads(run_cli("status", "--json", "--config", str(bucket.config)).stdout)
    assert status["models"][0]["active_version"] == 1


def test_daemon_warns_once_at_start_for_a_model_whose_signature_binds_no_version(
    tmp_path: Path, keys: Keys, procs: list[DaemonProcess]
) -> None:
    """`modelsync run` logs one warning for the opt-out model and none for the model
    on the default oms_subject."""
    bucket = FileBucket(tmp_path, keys)
    text = bucket.config.read_text()
    second = text.split("[[models]]", 1)[1].replace(f'"{MODEL}"', '"scorer"', 1)
    bucket.config.write_text(text + 'oms_subject = ""\n[[models]]' + second)
    daemon = DaemonProcess(["--config", str(bucket.config)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_for(lambda e: e.get("event") == "daemon started")
    daemon.wait_http()
    warnings = [e for e in daemon.events() if "does not bind the version" in e.get("event", "")]
    assert [e["model"] for e in warnings] == [MODEL], warnings
    assert warnings[0]["level"] == "warning"


@pytest.mark.parametrize("key", ["oms_keys", "oms_roots"])
@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: os.mkfifo(p), "a FIFO"),
        (lambda p: p.symlink_to("/dev/zero"), "a character device"),
        (lambda p: p.write_bytes(b"#" * ((1 << 20) + 1)), "more than"),
    ],
    ids=["fifo", "link-to-dev-zero", "too-large"],
)
def test_an_oms_key_or_root_file_that_could_block_or_flood_is_a_config_error(
    tmp_path: Path, key: str, make: Callable[[Path], object], says: str
) -> None:
    """verify.oms_keys / oms_roots naming a FIFO, a device or a huge file (read at each
    load and reload): exit 2 at once, one line naming the file, nothing read from it."""
    path = tmp_path / "planted.pem"
    make(path)
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{tmp_path}/s"\n[[models]]\nname = "m"\nsource = "file:///b"\n'
        f'[models.verify]\n{key} = ["{path}"]\n'
    )
    out = run_cli("sync", "--config", str(config), timeout=30)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and says in lines[0], lines
