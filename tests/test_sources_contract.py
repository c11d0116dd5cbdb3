"""One contract, every backend: what the sync engine relies on from a Source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import ManifestError, NotFoundError, RefusedError
from modelsync.manifest import MANIFEST_NAME
from modelsync.publish import publish
from modelsync.sources import Sink
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.backends import Backend, GcsBackend, LocalBackend, put_objects
from tests.helpers import model_files, write_tree


@pytest.fixture(params=["file", "gs", "s3", "az"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "file":
        yield LocalBackend(tmp_path / "bucket" / "ranker")
    elif request.param == "gs":
        endpoint = request.getfixturevalue("gcs_emulator")
        yield GcsBackend(endpoint, request.getfixturevalue("gcs_bucket"))
    else:
        yield request.getfixturevalue(f"{request.param}_backend")


def test_list_versions_ignores_non_versions(backend: Backend) -> None:
    """Only positive integer prefixes count as versions, ascending."""
    source = backend.source()
    assert source.list_versions() == []
    for key in ("10/a", "2/a", "latest/a", "007/a", "-1/a", "3.5/a", "README"):
        backend.put(key, b"x")
    assert source.list_versions() == [2, 10]
    source.close()


def test_read_object_missing_present_and_too_large(backend: Backend) -> None:
    """read_object returns bytes, None when missing, refuses oversize objects."""
    source = backend.source()
    backend.put("1/modelsync-manifest.json", b"{}")
    assert source.read_object(1, MANIFEST_NAME, 100) == b"{}"
    assert source.read_object(2, MANIFEST_NAME, 100) is None
    assert source.read_object(1, "nope", 100) is None
    with pytest.raises(RefusedError, match="larger than"):
        source.read_object(1, MANIFEST_NAME, 1)
    source.close()


def test_list_objects_and_fetch(backend: Backend, tmp_path: Path) -> None:
    """Objects are listed relative to the version and fetched byte for byte."""
    source = backend.source()
    files = model_files(4, size=300_000)
    put_objects(backend, 4, files)
    names = {o.name: o.size for o in source.list_objects(4)}
    assert {k: v for k, v in names.items() if k != MANIFEST_NAME} == {
        k: len(v) for k, v in files.items()
    }
    path = tmp_path / "out"
    with Sink(path, len(files["variables/variables.data-00000-of-00001"]), "t") as sink:
        source.fetch(4, "variables/variables.data-00000-of-00001", sink, CancelToken())
        sink.finish()
    assert path.read_bytes() == files["variables/variables.data-00000-of-00001"]
    with pytest.raises(NotFoundError), Sink(tmp_path / "m", None, "t") as missing:
        source.fetch(4, "missing", missing, CancelToken())
    source.close()


def test_fetch_stops_at_the_declared_size(backend: Backend, tmp_path: Path) -> None:
    """An object longer than declared is cut off with an error, never written past."""
    source = backend.source()
    backend.put("1/big", b"x" * 10_000)
    with (
        pytest.raises(RefusedError, match="more than the declared 100 bytes"),
        Sink(tmp_path / "o", 100, "t") as sink,
    ):
        source.fetch(1, "big", sink, CancelToken())
    assert (tmp_path / "o").stat().st_size <= 100
    source.close()


def test_traversal_names_are_refused(backend: Backend, tmp_path: Path) -> None:
    """Names that leave the version are refused before any I/O."""
    source = backend.source()
    for name in ("../2/x", "/etc/passwd", "a/../../x", "a\\b"):
        with pytest.raises(ManifestError), Sink(tmp_path / "o", None, "t") as sink:
            source.fetch(1, name, sink, CancelToken())
    source.close()


def test_upload_then_publish_then_sync(backend: Backend, tmp_path: Path) -> None:
    """A published revision is complete and syncs; an incomplete one is ignored."""
    src = write_tree(tmp_path / "src", model_files(1))
    assert publish(src, backend.url, version=1, source_options=backend.options()) == 1
    put_objects(backend, 2, model_files(2), complete=False)
    store = Store(tmp_path / "store", tmp_path / "store" / ".modelsync")
    syncer = Syncer(store)  # opened by the registry, with the backend's options
    model = ModelConfig(name="ranker", source=backend.url, source_options=backend.options())
    result = syncer.sync(model, CancelToken())
    syncer.close()
    assert result.outcome is Outcome.ACTIVATED
    assert result.active == 1
    served = tmp_path / "store" / "ranker" / "current"
    for name, data in model_files(1).items():
        assert (served / name).read_bytes() == data


def test_the_same_revision_syncs_byte_identically_from_every_backend(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """One tree, published by `modelsync publish` to file, gs, s3 and az: each store
    then holds the same files, byte for byte, under the same manifest."""
    files = model_files(5, size=200_000)
    src = write_tree(tmp_path / "src", files)
    backends: list[Backend] = [
        LocalBackend(tmp_path / "bucket" / "ranker"),
        GcsBackend(request.getfixturevalue("gcs_emulator"), request.getfixturevalue("gcs_bucket")),
        request.getfixturevalue("s3_backend"),
        request.getfixturevalue("az_backend"),
    ]
    trees = []
    for index, backend in enumerate(backends):
        options = backend.options()
        assert (
            publish(src, backend.url, version=5, source_options=options, clock=lambda: 1.7e9) == 5
        )
        store = tmp_path / f"data{index}" / "models"
        syncer = Syncer(Store(store, tmp_path / f"data{index}" / ".state"))
        model = ModelConfig(name="ranker", source=backend.url, source_options=backend.options())
        result = syncer.sync(model, CancelToken())
        syncer.close()
        assert result.outcome is Outcome.ACTIVATED, (backend.url, result.error)
        served = store / "ranker" / "5"
        trees.append(
            {p.relative_to(served): p.read_bytes() for p in served.rglob("*") if p.is_file()}
        )
    assert all(tree == trees[0] for tree in trees)
    assert {str(k) for k in trees[0]} >= set(files)
