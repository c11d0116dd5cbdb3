"""download_revision: every file of a revision fetched or reused, bounded and verified
(transfer.py), against real file:// buckets and, for the reuse race, a real
`modelsync sync` child and a writer beside it."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from modelsync.backends.file import LocalSource
from modelsync.cancel import CancelToken
from modelsync.errors import Cancelled, IntegrityError, RefusedError, StoreError
from modelsync.manifest import FileEntry, Manifest
from modelsync.retry import RetryPolicy
from modelsync.sources import open_source
from modelsync.sources.base import Sink
from modelsync.transfer import TransferStats, download_revision, safe_join
from tests.helpers import manifest_doc, model_files, put_revision, run_cli
from tests.oracle import Policy, check_served


def _manifest(files: dict[str, bytes], version: int = 1) -> Manifest:
    import json

    return Manifest.parse(json.dumps(manifest_doc(files, "ranker", version)).encode(), "t")


def _fetch_into(
    bucket: Path,
    files: dict[str, bytes],
    staging: Path,
    cancel: CancelToken | None = None,
    retry: RetryPolicy | None = None,
) -> TransferStats:
    """Download revision 1 of ``bucket`` (holding ``files``) into ``staging``."""
    return download_revision(
        open_source(f"file://{bucket}"),
        _manifest(files),
        staging,
        {},
        concurrency=2,
        cancel=cancel or CancelToken(),
        retry=retry or RetryPolicy(),
    )


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


def _download_reusing(
    bucket: Path, tmp_path: Path, files: dict[str, bytes], name: str, on_disk: bytes | None = None
) -> tuple[TransferStats, Path, Path]:
    """Publish ``files`` and download them with a retained copy of ``name`` on disk
    (holding ``on_disk``, by default its bytes) offered for reuse."""
    put_revision(bucket, 1, files)
    retained = tmp_path / "retained.bin"
    retained.write_bytes(files[name] if on_disk is None else on_disk)
    staging = tmp_path / "staging"
    staging.mkdir()
    stats = download_revision(
        open_source(f"file://{bucket}"),
        _manifest(files),
        staging,
        {hashlib.sha256(files[name]).hexdigest(): retained},
        concurrency=2,
        cancel=CancelToken(),
        retry=RetryPolicy(),
    )
    return stats, staging, retained


def test_reused_files_are_hard_links(bucket: Path, tmp_path: Path) -> None:
    """A file whose sha256 is on disk is linked (same inode), not fetched."""
    files = model_files(1)
    stats, staging, retained = _download_reusing(
        bucket, tmp_path, files, "variables/variables.index"
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
        _fetch_into(bucket, files, staging)
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
        _fetch_into(bucket, files, staging, cancel=token)


def test_safe_join_refuses_escapes(tmp_path: Path) -> None:
    """A path that resolves outside staging (e.g. through a planted link) is refused."""
    (tmp_path / "staging").mkdir()
    (tmp_path / "staging" / "link").symlink_to(tmp_path)
    assert safe_join(tmp_path / "staging", "a/b") == (tmp_path / "staging" / "a" / "b")
    with pytest.raises(RefusedError, match="outside the staging"):
        safe_join(tmp_path / "staging", "link/x")
    assert FileEntry("a", 1, "0" * 64).size == 1


class DamagingSource(LocalSource):
    """A file:// source whose first ``times`` reads of each file arrive damaged in a
    different way each time, as a flaky network without storage checksums would."""

    def __init__(self, url: str, times: int, how: str) -> None:
        super().__init__(url)
        self.left: dict[str, int] = {}
        self.times, self.how = times, how

    def fetch(self, version: int, name: str, sink: Sink, cancel: CancelToken) -> None:
        left = self.left.setdefault(name, self.times)
        if left == 0:
            return super().fetch(version, name, sink, cancel)
        self.left[name] = left - 1
        data = (self._object_path(version, name)).read_bytes()
        damaged = data + b"!" * (5 + left) if self.how == "extra" else bytes([left]) + data[1:]
        sink.write(damaged)
        return None


@pytest.mark.parametrize("how", ["extra", "flipped"])
def test_damage_in_transit_is_fetched_again_not_refused(
    bucket: Path, tmp_path: Path, how: str
) -> None:
    """Wrong bytes once: fetched again and verified. Wrong bytes, different every time:
    IntegrityError (the pass fails and is retried), never a refusal (finding 20)."""
    files = model_files(1)
    put_revision(bucket, 1, files)

    def download(times: int) -> None:
        staging = tmp_path / f"staging-{times}"
        staging.mkdir()
        download_revision(
            DamagingSource(f"file://{bucket}", times, how),
            _manifest(files),
            staging,
            {},
            concurrency=2,
            cancel=CancelToken(),
            retry=RetryPolicy(),
        )

    download(1)
    with pytest.raises(IntegrityError, match="differently each time") as info:
        download(5)
    assert not isinstance(info.value, RefusedError)


def test_a_retained_file_changed_on_disk_is_not_reused(bucket: Path, tmp_path: Path) -> None:
    """Same size, other bytes (a server wrote into the retained copy): fetched, not linked
    (finding 8)."""
    files = model_files(1)
    original = files["variables/variables.index"]
    stats, staging, _ = _download_reusing(
        bucket, tmp_path, files, "variables/variables.index", on_disk=bytes(len(original))
    )
    assert (stats.files_linked, stats.files_fetched) == (0, 3)
    assert (staging / "variables/variables.index").read_bytes() == original


@pytest.mark.parametrize("planted", ["sub", "sub/x"])
def test_a_link_planted_in_staging_is_never_followed(
    bucket: Path, tmp_path: Path, planted: str
) -> None:
    """A directory or file link where a revision's file goes: refused, and nothing is
    written where it points."""
    files = {"sub/x": b"payload" * 100}
    put_revision(bucket, 1, files)
    staging = tmp_path / "staging"
    (staging / "sub").mkdir(parents=True) if planted == "sub/x" else staging.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (staging / planted).symlink_to(outside if planted == "sub" else outside / "x")
    with pytest.raises((RefusedError, StoreError)):
        _fetch_into(bucket, files, staging, retry=RetryPolicy(attempts=1))
    assert list(outside.iterdir()) == []


class CountingSource(LocalSource):
    """A file:// source that counts the fetches of each object."""

    def __init__(self, root: Path) -> None:
        super().__init__(f"file://{root}")
        self.fetches: dict[str, int] = {}

    def fetch(self, version: int, name: str, sink: Sink, cancel: CancelToken) -> None:
        self.fetches[name] = self.fetches.get(name, 0) + 1
        super().fetch(version, name, sink, cancel)


def test_files_with_the_same_content_are_fetched_once(bucket: Path, tmp_path: Path) -> None:
    """Twins (empty files, copied shards) are one fetch, kept once, linked to each
    path; every path gets the bytes."""
    from modelsync.partial import PartialDownloads

    shard = b"same" * 50_000
    files = {"a/shard": shard, "b/shard": shard, "c/copy": shard, "x": b"", "y": b"", "z": b"z"}
    put_revision(bucket, 1, files)
    staging = tmp_path / "staging"
    staging.mkdir()
    source = CountingSource(bucket)
    stats = download_revision(
        source,
        _manifest(files),
        staging,
        {},
        concurrency=6,
        cancel=CancelToken(),
        retry=RetryPolicy(),
        partial=PartialDownloads(tmp_path / "partial"),
    )
    for name, data in files.items():
        assert (staging / name).read_bytes() == data
    assert sum(source.fetches.values()) == 3, source.fetches  # shard, empty, z
    assert (stats.files_fetched, stats.files_linked) == (3, 3)


def test_small_files_go_straight_to_staging_and_are_kept_for_resume(
    bucket: Path, tmp_path: Path
) -> None:
    """A file below 1 MiB is written in place (no .part) and kept, once verified, as
    the same inode under its sha256; a 2 MiB file takes the .part road and is kept too."""
    from modelsync.partial import PartialDownloads

    files = {f"small-{i}": bytes([i]) * 1000 for i in range(1, 30)}
    files["dir/large"] = bytes(range(256)) * 8192
    put_revision(bucket, 1, files)
    staging = tmp_path / "staging"
    staging.mkdir()
    kept = PartialDownloads(tmp_path / "partial")
    stats = download_revision(
        open_source(f"file://{bucket}"),
        _manifest(files),
        staging,
        {},
        concurrency=1,
        small_concurrency=8,
        cancel=CancelToken(),
        retry=RetryPolicy(),
        partial=kept,
    )
    assert stats.files_fetched == len(files)
    complete = kept.complete()
    for name, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        assert (staging / name).read_bytes() == data
        assert complete[digest].stat().st_ino == (staging / name).stat().st_ino
    assert not [p for p in (tmp_path / "partial").iterdir() if p.suffix]


def _race_once(tmp_path: Path, big: bytes) -> tuple[bool, subprocess.CompletedProcess[str]]:
    """Serve revision 1 (``big`` and a small file), publish revision 2 sharing ``big``,
    and sync it while a writer changes one byte of the served copy once the child's
    read of that inode is past 8 MiB. (whether the write landed mid-read, the run)."""
    bucket = tmp_path / "bucket" / "ranker"
    store = tmp_path / "store"
    put_revision(bucket, 1, {"big.bin": big, "small.txt": b"one"})
    argv = ["sync", "--store", str(store), "--model", "ranker", "--source", f"file://{bucket}"]
    assert run_cli(*argv).returncode == 0
    # A twin: the same bytes under another name, linked to the reused file.
    put_revision(bucket, 2, {"big.bin": big, "copy/big.bin": big, "small.txt": b"two"})
    served = store / "ranker" / "1" / "big.bin"
    inode = served.stat().st_ino
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    child = subprocess.Popen(
        [sys.executable, "-m", "modelsync", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    wrote: list[int] = []

    def writer() -> None:
        # The server writes where it reads: one byte at offset 0, behind the hash.
        while child.poll() is None and not wrote:
            for fd in os.listdir(f"/proc/{child.pid}/fd") if child.poll() is None else ():
                try:
                    if os.stat(f"/proc/{child.pid}/fd/{fd}").st_ino != inode:
                        continue
                    info = Path(f"/proc/{child.pid}/fdinfo/{fd}").read_text()
                except OSError:
                    continue
                if int(info.split("pos:")[1].split()[0]) > 8 << 20:
                    with served.open("r+b") as handle:
                        handle.write(b"\x01" if handle.read(1) != b"\x01" else b"\x02")
                    wrote.append(1)
                    return

    thread = threading.Thread(target=writer)
    thread.start()
    out, err = child.communicate(timeout=120)
    thread.join()
    return bool(wrote), subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_a_retained_file_written_while_it_is_hashed_for_reuse_is_never_served(
    tmp_path: Path,
) -> None:
    """Revision 2 shares a 160 MiB file with the served revision 1 (twice: a copy under
    another name), so the pass links the local copy instead of fetching it. The
    server changes one byte of it while modelsync reads it (past 8 MiB, so behind the
    hash). Whatever the pass then does, revision 2 is never served with bytes that
    differ from its manifest: the served tree passes the independent oracle.
    (Red-team finding: the verification record was taken after the hash, with the
    written file's identity.)"""
    big = random.Random(1).randbytes(1 << 20) * 160
    for attempt in range(3):
        world = tmp_path / str(attempt)
        landed, run = _race_once(world, big)
        if landed:
            break
    assert landed, "the writer never saw the read in three runs"
    verdict = check_served(world / "store", Policy("ranker"), set())
    assert verdict.violations == [], (verdict.violations, run.stderr[-2000:])


def test_a_damaged_range_kept_for_resume_is_dropped_when_the_object_checksum_fails(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str
) -> None:
    """A large file is read as ranges and kept across passes (resume). One range
    answer arrives with a byte changed and its headers intact, so the range's own crc
    vouches for the damage and only the store's whole-object crc32c catches it. The
    kept download must go with that failure: the next pass, through honest answers,
    serves the revision (before, every later pass resumed the same damaged range and
    failed, and the revision was never served)."""
    from modelsync.backends.gs import GcsOptions, GcsSource
    from modelsync.config import ModelConfig
    from modelsync.sync import Outcome, Syncer
    from modelsync.volume import Store
    from tests.backends import GcsBackend
    from tests.rewriteproxy import Answer, Rewrite, RewriteProxy

    backend = GcsBackend(gcs_emulator, gcs_bucket)
    files = {"large.bin": random.Random(3).randbytes(1536 * 1024), "small.txt": b"s"}
    for name, data in files.items():
        backend.put(f"1/{name}", data)
    backend.put("1/modelsync-manifest.json", json.dumps(manifest_doc(files, "ranker", 1)).encode())
    damage = [1]

    def hook(method: str, path: str, headers: dict[str, str]) -> Rewrite | None:
        if not (damage[0] and method == "GET" and "large.bin" in path and "Range" in headers):
            return None
        damage[0] -= 1

        def flip(status: int, answer: list[tuple[str, str]], body: bytes) -> Answer:
            return status, answer, bytes([body[0] ^ 0x5A]) + body[1:]

        return flip

    proxy = RewriteProxy(gcs_emulator, hook)
    options = GcsOptions(endpoint=proxy.url, range_threshold=1 << 20, range_size=512 * 1024)
    syncer = Syncer(
        Store(tmp_path / "store", tmp_path / ".state"),
        retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.05, total=30),
        sources=lambda url, _opts: GcsSource(url, options),
    )
    model = ModelConfig(name="ranker", source=backend.url)
    try:
        first = syncer.sync(model, CancelToken())
        second = syncer.sync(model, CancelToken())
    finally:
        syncer.close()
        proxy.close()
    assert first.outcome is Outcome.FAILED and "crc32c checksum mismatch" in (first.error or "")
    assert (second.outcome, second.active) == (Outcome.ACTIVATED, 1), second.error
    served = tmp_path / "store" / "ranker" / "current" / "large.bin"
    assert served.read_bytes() == files["large.bin"]
