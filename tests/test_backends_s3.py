"""What only s3:// has: which storage checksum it trusts, and one client for many
models (the shared contract runs on moto in test_sources_contract/_network)."""

from __future__ import annotations

import base64
import hashlib
import json
import resource
from pathlib import Path

import pytest

from modelsync.backends._s3_checksums import Checks
from modelsync.backends.s3 import S3Source
from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import IntegrityError
from modelsync.manifest import MANIFEST_NAME
from modelsync.sources import Connections, open_source
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.backends import S3Backend
from tests.helpers import manifest_doc

DATA = b"model bytes" * 100


def _feed(checks: Checks, data: bytes) -> None:
    for hasher in checks.hashers:
        hasher.update(data)


@pytest.mark.parametrize(
    ("headers", "used"),
    [
        ({"x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(DATA).digest()).decode()}, 1),
        ({"etag": f'"{hashlib.md5(DATA, usedforsecurity=False).hexdigest()}"'}, 1),
        # A multipart ETag and a composite checksum cover parts, not the bytes.
        ({"etag": '"0123456789abcdef0123456789abcdef-3"'}, 0),
        ({"x-amz-checksum-sha256": "abc=-3", "x-amz-checksum-type": "COMPOSITE"}, 0),
        # A multipart object's checksum without a type (moto, some S3-compatible stores).
        ({"x-amz-checksum-sha256": "abc=", "etag": '"0123-2"'}, 0),
        (
            {
                "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(DATA).digest()).decode(),
                "x-amz-checksum-type": "FULL_OBJECT",
                "etag": '"0123-2"',
            },
            1,
        ),
        # SSE-KMS and SSE-C objects' ETags are not their MD5.
        (
            {
                "etag": '"0123456789abcdef0123456789abcdef"',
                "x-amz-server-side-encryption": "aws:kms",
            },
            0,
        ),
        (
            {
                "etag": '"0123456789abcdef0123456789abcdef"',
                "x-amz-server-side-encryption-customer-algorithm": "AES256",
            },
            0,
        ),
    ],
)
def test_the_checksum_trusted_is_one_that_covers_the_bytes(
    headers: dict[str, str], used: int
) -> None:
    checks = Checks(headers)
    assert len(checks.hashers) == used
    _feed(checks, DATA)
    checks.check("x")  # right bytes pass
    damaged = Checks(headers)
    _feed(damaged, DATA[:-1] + b"!")
    if used:
        with pytest.raises(IntegrityError, match="checksum mismatch"):
            damaged.check("x")


def test_crc32c_as_s3_reports_it() -> None:
    import google_crc32c

    value = google_crc32c.value(DATA).to_bytes(4, "big")
    checks = Checks({"x-amz-checksum-crc32c": base64.b64encode(value).decode()})
    _feed(checks, DATA)
    checks.check("x")


def test_many_models_share_one_client(tmp_path: Path, s3_backend: S3Backend) -> None:
    """60 models in one bucket, one syncer: one boto3 client (a session and client
    cost ~13 MB each, which 3,000 models would multiply), every model synced."""
    models = []
    for index in range(60):
        name = f"m{index}"
        files = {"w.bin": name.encode()}
        backend = S3Backend(s3_backend.endpoint, s3_backend.bucket, f"models/{name}")
        backend.put("1/w.bin", files["w.bin"])
        backend.put(f"1/{MANIFEST_NAME}", json.dumps(manifest_doc(files, name, 1)).encode())
        models.append(ModelConfig(name=name, source=backend.url, source_options=backend.options()))
    syncer = Syncer(Store(tmp_path / "data" / "models", tmp_path / "data" / ".state"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for model in models:
        assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(syncer._connections) == 1
    assert grown_mb < 100, grown_mb
    assert (tmp_path / "data" / "models" / "m59" / "1" / "w.bin").read_bytes() == b"m59"
    syncer.close()


def test_a_source_alone_owns_its_client(s3_backend: S3Backend) -> None:
    """Opened without a shared pool (a one-off publish), the source closes its client."""
    source = open_source(s3_backend.url, s3_backend.options())
    assert isinstance(source, S3Source)
    assert source.list_versions() == []
    source.close()
    shared = Connections()
    first = open_source(s3_backend.url, s3_backend.options(), shared)
    second = open_source(s3_backend.url + "2", s3_backend.options(), shared)
    first.list_versions(), second.list_versions()
    assert len(shared) == 1
    first.close()
    assert len(shared) == 1  # the owner closes shared clients, not a source
    shared.close()
    assert len(shared) == 0


def test_a_multipart_upload_syncs(tmp_path: Path, s3_backend: S3Backend) -> None:
    """A file published in parts (over range_threshold) carries a checksum of its parts,
    not of its bytes: the sync trusts sha256 from the manifest instead and succeeds
    (`make bench` found this: moto marks neither the type nor the part count)."""
    import random

    from modelsync.publish import publish
    from tests.helpers import write_tree

    data = random.Random(3).randbytes(11 * 1024 * 1024 + 7)
    src = write_tree(tmp_path / "src", {"variables/data": data})
    options = {**s3_backend.options(), "range_threshold": "5MiB", "range_size": "5MiB"}
    assert publish(src, s3_backend.url, version=2, source_options=options) == 2
    syncer = Syncer(Store(tmp_path / "data" / "models", tmp_path / "data" / ".state"))
    model = ModelConfig(name="ranker", source=s3_backend.url, source_options=options)
    result = syncer.sync(model, CancelToken())
    syncer.close()
    assert result.outcome is Outcome.ACTIVATED, result.error
    assert (
        tmp_path / "data" / "models" / "ranker" / "2" / "variables" / "data"
    ).read_bytes() == data
