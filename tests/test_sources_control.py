"""Control objects (channel pointers, reports) on every backend, on real servers.

Conditional reads and writes are the store's own: a GCS generation, an S3 or Azure
ETag, a file's identity. gcp-storage-emulator ignores preconditions (GCS keeps them),
so the lost-update checks skip it and say so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest

from modelsync.cancel import CancelToken
from modelsync.channel import Pointer
from modelsync.config import ModelConfig
from modelsync.errors import PublishConflict, RefusedError
from modelsync.publish import publish
from modelsync.release import Release
from modelsync.reports import failed_hosts, failure_markers, write_report
from modelsync.sources.control import UNCHANGED, Control
from modelsync.state import ChannelInfo
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.backends import Backend, GcsBackend, LocalBackend, NetworkBackend
from tests.faultproxy import FaultProxy
from tests.helpers import FAST_RETRY, write_tree

KEY = "_channels/prod.json"


@pytest.fixture(params=["file", "gs", "s3", "az"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "file":
        yield LocalBackend(tmp_path / "bucket" / "ranker")
    elif request.param == "gs":
        yield GcsBackend(
            request.getfixturevalue("gcs_emulator"), request.getfixturevalue("gcs_bucket")
        )
    else:
        yield request.getfixturevalue(f"{request.param}_backend")


def test_get_put_and_not_modified(backend: Backend) -> None:
    """Missing → None; written → read back with a tag; same tag → UNCHANGED; a new
    write → a new tag and the new bytes."""
    source = backend.source()
    assert source.get_control(KEY, 1000) is None
    tag = source.put_control(KEY, b'{"stable": 1}\n', match="")
    got = source.get_control(KEY, 1000)
    assert isinstance(got, Control)
    assert got.data == b'{"stable": 1}\n'
    assert source.get_control(KEY, 1000, got.tag) is UNCHANGED
    new_tag = source.put_control(KEY, b'{"stable": 2}\n', match=got.tag)
    assert new_tag != tag
    again = source.get_control(KEY, 1000, got.tag)
    assert isinstance(again, Control)
    assert again.data == b'{"stable": 2}\n'
    with pytest.raises(RefusedError, match="larger than 5 bytes"):
        source.get_control(KEY, 5)
    source.close()


def test_conditional_write_loses_no_update(backend: Backend) -> None:
    """Two writers read the same tag: the second write is refused, the first stands;
    create-only refuses an existing object."""
    if isinstance(backend, GcsBackend):
        pytest.skip("gcp-storage-emulator ignores if_generation_match (GCS honours it)")
    source = backend.source()
    first = source.put_control(KEY, b"one", match="")
    source.put_control(KEY, b"two", match=first)
    with pytest.raises(PublishConflict, match="changed by someone else"):
        source.put_control(KEY, b"three", match=first)
    with pytest.raises(PublishConflict):
        source.put_control(KEY, b"four", match="")
    got = source.get_control(KEY, 100)
    assert isinstance(got, Control) and got.data == b"two"
    source.close()


def test_list_reports_and_refuse_other_keys(backend: Backend) -> None:
    """Listing returns report keys with tags; keys outside the control names are refused."""
    source = backend.source()
    assert source.list_control("_reports/7/") == {}
    source.put_control("_reports/7/host-a.json", b"{}")
    source.put_control("_reports/7/host-b.json", b"{}")
    source.put_control("_reports/8/host-a.json", b"{}")
    listed = source.list_control("_reports/7/")
    assert sorted(listed) == ["_reports/7/host-a.json", "_reports/7/host-b.json"]
    assert all(listed.values())
    for bad in ("../x.json", "_channels/../../etc.json", "7/modelsync-manifest.json", "_reports/"):
        with pytest.raises(ValueError, match="not a control object key"):
            source.get_control(bad, 100)
    source.close()


def test_nineteen_digit_versions_and_nonce_markers(backend: Backend) -> None:
    """Reports of MAX_VERSION (a nanosecond timestamp) and markers filed under a canary's
    nonce are written, listed and read back on every store."""
    source = backend.source()
    version = 2**63 - 1
    info = ChannelInfo("prod", 1, version, 5.0, True, False, version, nonce="0123456789abcdef")
    write_report(source, "ranker", version, "pod-a", "rolled_back", "oom", channel=info)
    listed = source.list_control(f"_reports/{version}/")
    assert sorted(listed) == [
        f"_reports/{version}/failed/0123456789abcdef/pod-a.json",
        f"_reports/{version}/pod-a.json",
    ]
    assert failed_hosts(listed, version, "0123456789abcdef") == {"pod-a"}
    markers = failure_markers(source, "ranker", version, "0123456789abcdef", CancelToken())
    assert markers == {"pod-a": "rolled_back: oom"}
    source.close()


def test_file_control_objects_follow_no_link(tmp_path: Path) -> None:
    """file://: a _reports/<v> (or _reports, or _channels) made a link is never written
    through, read through or listed through; nothing lands outside the bucket."""
    root = tmp_path / "bucket" / "ranker"
    outside = tmp_path / "served" / "ranker" / "1"
    outside.mkdir(parents=True)
    (outside / "a.json").write_bytes(b"{}")
    source = LocalBackend(root).source()
    source.put_control("_reports/4/a.json", b"{}")
    (root / "_reports" / "5").symlink_to(outside)
    with pytest.raises(RefusedError, match=r"_reports/5/h\.json: a link or a file on its path"):
        source.put_control("_reports/5/h.json", b"{}")
    with pytest.raises(RefusedError, match="links are not followed"):
        source.get_control("_reports/5/a.json", 100)
    assert source.list_control("_reports/5/") == {}
    with pytest.raises(RefusedError):  # a host's report: a warning in its log
        write_report(source, "ranker", 5, "h", "rolled_back", "x")
    (root / "_reports" / "4" / "failed").symlink_to(outside)
    assert source.list_control("_reports/4/") == {"_reports/4/a.json": ANY}
    with pytest.raises(RefusedError):
        source.put_control("_reports/4/failed/h.json", b"{}")
    (root / "_channels").symlink_to(outside)
    with pytest.raises(RefusedError):
        source.put_control(KEY, b"{}")
    assert sorted(p.name for p in outside.iterdir()) == ["a.json"]


def _publish(backend: Backend, root: Path, version: int) -> None:
    src = write_tree(root / f"src{version}", {"model.bin": f"v{version}".encode() * 100})
    publish(src, backend.url, version=version, source_options=backend.options())


def test_release_and_an_idle_channel_pass_cost(
    tmp_path: Path, network_backend: NetworkBackend
) -> None:
    """Following a channel: an idle pass is one small conditional GET (no canary), two
    requests with a canary (the pointer and one report listing), counted at the proxy."""
    proxy = FaultProxy(network_backend.port).start()
    try:
        for version in (1, 2):
            _publish(network_backend, tmp_path, version)
        release = Release(network_backend.source(), "ranker", "prod", "test")
        release.promote(1)
        model = ModelConfig(
            name="ranker",
            source=network_backend.url,
            source_options=network_backend.options(proxy.url),
            channel="prod",
            report=True,
        )
        syncer = Syncer(
            Store(tmp_path / "store", tmp_path / ".state"), retry=FAST_RETRY, identity="h1"
        )
        assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
        for _ in range(2):
            proxy.reset_counts()
            assert syncer.sync(model, CancelToken()).outcome is Outcome.UNCHANGED
            assert len(proxy.requests) == 1, proxy.requests
            assert "_channels" in proxy.requests[0][1]
            assert proxy.bytes_out < 4096
        release.start(2, 0.0, None, None)  # a canary no host is in
        syncer.sync(model, CancelToken())
        proxy.reset_counts()
        assert syncer.sync(model, CancelToken()).outcome is Outcome.UNCHANGED
        assert len(proxy.requests) == 2, proxy.requests
        assert "_reports" in proxy.requests[1][1]
        status = release.status()
        assert status.version == 2 and status.not_reported == ()
        release.set_percent(100.0)
        assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
        assert (tmp_path / "store" / "ranker" / "current").resolve().name == "2"
        assert release.status().as_dict()["confirmed"] == ["h1"]
        syncer.close()
    finally:
        proxy.stop()


def test_pointer_written_by_release_parses(backend: Backend) -> None:
    source = backend.source()
    release = Release(source, "ranker", "prod", "ops@host")
    pointer, tag = release.read()
    assert pointer is None and tag == ""
    source.put_control("_channels/prod.json", Pointer(stable=None).to_bytes(), match="")
    pointer, tag = release.read()
    assert pointer == Pointer(stable=None) and tag
    source.close()
