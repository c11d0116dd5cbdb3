from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.errors import Cancelled, RefusedError
from modelsync.manifest import FileEntry, Manifest
from modelsync.retry import RetryPolicy
from modelsync.sources import open_source
from modelsync.transfer import download_revision, safe_join
from tests.helpers import manifest_doc, model_files, put_revision


def _manifest(files: dict[str, bytes], version: int = 1) -> Manifest:
    import json

    return Manifest.parse(json.dumps(manifest_doc(files, "ranker", version)).encode(), "t")


def test_downloads_every_file_in_parallel(bucket: Path, tmp_path: Path) -> None:
    """All files arrive byte-exact; the progress callback sees every byte."""
    files = {f"shard-{i:03d}": hashlib.sha256(bytes([i])).digest() * 2000 for i in range(40)}
    put_revision(bucket, 1, files)
    staging = tmp_path / "staging"
    staging.mkdir()
    seen: list[int] = []
    stats = download_revision(
        open_source(f"file://{bucket}"),
        _manifest(files),
        staging,
        {},
        concurrency=8,
        cancel=CancelToken(),
        retry=RetryPolicy(),
        on_bytes=seen.append,
    )
    assert stats.files_fetched == 40
    assert sum(seen) == sum(len(d) for d in files.values())
    for name, data in files.items():
        assert (staging / name).read_bytes() == data


def test_reused_files_are_hard_links(bucket: Path, tmp_path: Path) -> None:
    """A file whose sha256 is on disk is linked (same inode), not fetched."""
    files = model_files(1)
    put_revision(bucket, 1, files)
    retained = tmp_path / "retained.bin"
    retained.write_bytes(files["variables/variables.index"])
    digest = hashlib.sha256(files["variables/variables.index"]).hexdigest()
    staging = tmp_path / "staging"
    staging.mkdir()
    stats = download_revision(
        open_source(f"file://{bucket}"),
        _manifest(files),
        staging,
        {digest: retained},
        concurrency=2,
        cancel=CancelToken(),
        retry=RetryPolicy(),
    )
    assert stats.files_linked == 1
    assert stats.files_fetched == 2
    assert (staging / "variables/variables.index").stat().st_ino == retained.stat().st_ino


@pytest.mark.parametrize("lie", ["shorter", "longer", "different"])
def test_bytes_that_differ_from_the_manifest_are_refused(
    bucket: Path, tmp_path: Path, lie: str
) -> None:
    """Sizes that lie either way and changed bytes are refused; no partial file is kept."""
    files = model_files(1)
    put_revision(bucket, 1, files)
    target = bucket / "1" / "saved_model.pb"
    data = target.read_bytes()
    target.write_bytes(
        {"shorter": data[:-1], "longer": data + b"!" * 10_000, "different": data[:-1] + b"?"}[lie]
    )
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(RefusedError, match=r"saved_model\.pb"):
        download_revision(
            open_source(f"file://{bucket}"),
            _manifest(files),
            staging,
            {},
            concurrency=1,
            cancel=CancelToken(),
            retry=RetryPolicy(),
        )
    assert not (staging / "saved_model.pb").exists()


def test_stop_cancels_the_download(bucket: Path, tmp_path: Path) -> None:
    """A stopped token aborts before fetching."""
    files = model_files(1)
    put_revision(bucket, 1, files)
    token = CancelToken()
    token.stop_event.set()
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(Cancelled):
        download_revision(
            open_source(f"file://{bucket}"),
            _manifest(files),
            staging,
            {},
            concurrency=2,
            cancel=token,
            retry=RetryPolicy(),
        )


def test_safe_join_refuses_escapes(tmp_path: Path) -> None:
    """A path that resolves outside staging (e.g. through a planted link) is refused."""
    (tmp_path / "staging").mkdir()
    (tmp_path / "staging" / "link").symlink_to(tmp_path)
    assert safe_join(tmp_path / "staging", "a/b") == (tmp_path / "staging" / "a" / "b")
    with pytest.raises(RefusedError, match="outside the staging"):
        safe_join(tmp_path / "staging", "link/x")
    assert FileEntry("a", 1, "0" * 64).size == 1
