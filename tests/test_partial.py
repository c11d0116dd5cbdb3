"""Interrupted downloads resume: after kill -9, a pass deadline, or altered bytes on
disk, on real API servers through the counting proxy (bytes sent are counted as
they leave it); and the kept downloads stay bounded to the revision wanted."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.partial import PartialDownloads
from modelsync.retry import RetryPolicy
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.backends import GcsBackend, NetworkBackend, put_objects, shard_files
from tests.faultproxy import FaultPlan, FaultProxy

FAST_RETRY = RetryPolicy(attempts=12, initial=0.01, maximum=0.2, total=120)
RANGE = 256 * 1024
# Small enough to be ranged, with ranges of the smallest allowed size: many ranges.
RANGED = {"range_threshold": 1024 * 1024, "range_size": RANGE, "range_workers": 4}
BIG = 12 * 1024 * 1024


def _files(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {"variables/data": rng.randbytes(BIG), **shard_files(3, 20_000, seed)}


def _model(backend: NetworkBackend, proxy: FaultProxy) -> ModelConfig:
    return ModelConfig(
        name="ranker",
        source=backend.url,
        source_options={**backend.options(proxy.url), **RANGED},
    )


def _throttled(backend: NetworkBackend, rate: int) -> FaultProxy:
    """A proxy that sends the big object's ranges at ``rate`` bytes/s each."""
    return FaultProxy(
        backend.port, FaultPlan(throttle=rate, slow=lambda path: "data" in path)
    ).start()


def _partial(tmp_path: Path) -> PartialDownloads:
    return PartialDownloads(tmp_path / ".state" / "partial" / "ranker")


def _sync(tmp_path: Path, model: ModelConfig, cancel: CancelToken) -> Outcome:
    syncer = Syncer(Store(tmp_path / "store", tmp_path / ".state"), retry=FAST_RETRY)
    try:
        return syncer.sync(model, cancel).outcome
    finally:
        syncer.close()


def _assert_served(tmp_path: Path, files: dict[str, bytes], version: int = 1) -> None:
    for name, data in files.items():
        path = tmp_path / "store" / "ranker" / str(version) / name
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest(), name


def _cut_by_deadline(tmp_path: Path, model: ModelConfig, proxy: FaultProxy, share: float) -> int:
    """Run a pass and cut it (its deadline) once ``share`` of the big object was sent;
    return the bytes the proxy had sent by then."""
    cancel = CancelToken()
    # Bytes sent when the pass was cut: what the proxy pushes into sockets the client
    # has closed after that never arrives.
    sent = [0]

    def watch() -> None:
        while proxy.bytes_out < share * BIG:
            time.sleep(0.005)
        sent[0] = proxy.bytes_out
        cancel.stop_event.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert _sync(tmp_path, model, cancel) is Outcome.FAILED
    watcher.join(timeout=5)
    return sent[0]


def test_resume_after_a_pass_deadline(tmp_path: Path, network_backend: NetworkBackend) -> None:
    """A pass cut at ~60 %: the next fetches about the remaining 40 %, on gs, s3 and az."""
    files = _files(1)
    put_objects(network_backend, 1, files)
    proxy = _throttled(network_backend, 2_000_000)
    try:
        model = _model(network_backend, proxy)
        sent = _cut_by_deadline(tmp_path, model, proxy, 0.6)
        assert any(p.name.endswith(".ranges") for p in _partial(tmp_path).dir.iterdir())
        proxy.reset_counts()
        assert _sync(tmp_path, model, CancelToken()) is Outcome.ACTIVATED
        _assert_served(tmp_path, files)
        # What was in flight when cut (4 ranges) is fetched again; nothing more.
        assert proxy.bytes_out <= BIG - sent + 4 * RANGE + 200_000, (proxy.bytes_out, sent)
        assert proxy.bytes_out < 0.6 * BIG
    finally:
        proxy.stop()
    assert list(_partial(tmp_path).dir.iterdir()) == []  # linked into the revision


def test_an_altered_kept_range_is_fetched_again(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str
) -> None:
    """Bytes of a kept block changed on disk between passes: caught by its crc32c and
    fetched again; the revision served is the publisher's, byte for byte."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    files = _files(2)
    put_objects(backend, 1, files)
    proxy = _throttled(backend, 2_000_000)
    try:
        model = _model(backend, proxy)
        _cut_by_deadline(tmp_path, model, proxy, 0.5)
        partial = _partial(tmp_path)
        (journal,) = partial.dir.glob("*.ranges")
        starts = [int(line.split()[0]) for line in journal.read_text().splitlines()[1:]]
        assert len(starts) >= 4
        victim = sorted(starts)[len(starts) // 2]
        (part,) = partial.dir.glob("*.part")
        with part.open("r+b") as handle:
            handle.seek(victim + 1000)
            byte = handle.read(1)
            handle.seek(victim + 1000)
            handle.write(bytes([byte[0] ^ 0xFF]))
        proxy.reset_counts()
        assert _sync(tmp_path, model, CancelToken()) is Outcome.ACTIVATED
        _assert_served(tmp_path, files)
        ranges = [p for _, p in proxy.requests if "data" in p]
        assert len(ranges) >= 1
        # The altered range came over the wire again (its bytes are in the count).
        assert proxy.bytes_out >= RANGE
    finally:
        proxy.stop()


def test_kept_downloads_hold_only_the_revision_wanted(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str
) -> None:
    """A cut download of v1, then v2 is published (v1 no longer wanted): its pass
    removes v1's kept bytes and strangers; afterwards nothing is kept at all."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    put_objects(backend, 1, _files(3))
    proxy = _throttled(backend, 2_000_000)
    try:
        model = _model(backend, proxy)
        _cut_by_deadline(tmp_path, model, proxy, 0.3)
        partial = _partial(tmp_path)
        v1_keys = {p.name.split(".")[0] for p in partial.dir.iterdir()}
        assert v1_keys
        (partial.dir / "stranger").write_bytes(b"x" * 1000)
        (partial.dir / ("0" * 64 + ".part")).write_bytes(b"x" * 1000)
        v2 = _files(4)
        put_objects(backend, 2, v2)
        proxy.plan.throttle = 0
        assert _sync(tmp_path, model, CancelToken()) is Outcome.ACTIVATED
        _assert_served(tmp_path, v2, version=2)
        assert list(partial.dir.iterdir()) == []
    finally:
        proxy.stop()


def _config(tmp_path: Path, backend: NetworkBackend, proxy: FaultProxy) -> Path:
    options = "\n".join(f"{k} = {v!r}" for k, v in {**RANGED, "endpoint": proxy.url}.items())
    path = tmp_path / "modelsync.toml"
    path.write_text(
        f'store = "{tmp_path / "store"}"\nstate_dir = "{tmp_path / ".state"}"\n\n'
        f'[[models]]\nname = "ranker"\nsource = "{backend.url}"\n\n'
        f"[models.source_options]\n{options}\n"
    )
    return path


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_kill_9_at_a_random_point_resumes_with_what_was_kept(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str, seed: int
) -> None:
    """`modelsync sync` killed with SIGKILL part-way through a multi-range download;
    the next run fetches only what had not arrived (plus the ranges in flight)."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    files = _files(seed)
    put_objects(backend, 1, files)
    share = random.Random(seed).uniform(0.25, 0.9)
    proxy = _throttled(backend, 2_000_000)
    config = _config(tmp_path, backend, proxy)
    argv = [sys.executable, "-m", "modelsync", "sync", "--config", str(config)]
    try:
        with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
            deadline = time.monotonic() + 60
            while proxy.bytes_out < share * BIG and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.005)
            sent = proxy.bytes_out
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert sent < BIG
        proxy.reset_counts()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert "resumed a partial download" in done.stderr
        _assert_served(tmp_path, files)
        assert proxy.bytes_out <= BIG - sent + 4 * RANGE + 200_000, (proxy.bytes_out, sent)
    finally:
        proxy.stop()


def test_a_range_resumes_after_its_last_complete_block(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str
) -> None:
    """8 MiB ranges of 4 MiB blocks: a pass cut part-way through a range keeps the
    range's complete blocks, and the next asks only for the rest of the range."""
    backend = GcsBackend(gcs_emulator, gcs_bucket)
    files = _files(5)
    put_objects(backend, 1, files)
    proxy = _throttled(backend, 3_000_000)
    try:
        model = ModelConfig(
            name="ranker",
            source=backend.url,
            source_options={
                **backend.options(proxy.url),
                **RANGED,
                "range_size": 8 * 1024 * 1024,
            },
        )
        # Cut at 90 %: each of the two ranges has a complete 4 MiB block by then.
        sent = _cut_by_deadline(tmp_path, model, proxy, 0.9)
        proxy.reset_counts()
        assert _sync(tmp_path, model, CancelToken()) is Outcome.ACTIVATED
        _assert_served(tmp_path, files)
        # Whole ranges would mean fetching the first 8 MiB range again; blocks lose at
        # most the block in flight in each of the two ranges.
        assert proxy.bytes_out <= BIG - sent + 2 * 4 * 1024 * 1024 + 200_000, (
            proxy.bytes_out,
            sent,
        )
        assert proxy.bytes_out < BIG - 4 * 1024 * 1024
    finally:
        proxy.stop()


def test_hostile_entries_are_removed_not_kept(tmp_path: Path) -> None:
    """A link, a FIFO or a directory planted where a kept download goes is removed (never
    followed, never kept), so the next download starts clean instead of failing for good."""
    from modelsync.sources.base import Sink

    sha = "a" * 64
    kept = PartialDownloads(tmp_path / "partial")
    kept.dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (kept.dir / f"{sha}.part").symlink_to(victim)
    os.mkfifo(kept.dir / f"{sha}.ranges")
    (kept.dir / sha).symlink_to(victim)
    (kept.dir / ("b" * 64)).mkdir()
    assert kept.complete() == {}
    part, journal = kept.part(sha)
    assert not part.exists() and not (kept.dir / f"{sha}.ranges").exists()
    with Sink(part, 3, "x", journal=journal) as sink:
        assert journal.kept(3) == {}
        sink.write(b"abc")
        sink.finish()
    journal.close()
    assert kept.keep_only({sha}) == 2  # the planted <sha> link and the directory
    assert victim.read_bytes() == b"keep me"
    assert sorted(p.name for p in kept.dir.iterdir()) == [f"{sha}.part", f"{sha}.ranges"]
