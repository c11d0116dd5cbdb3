"""gs://bucket/prefix: Google Cloud Storage, read through its JSON API on the
transfer engine (_gs_json.py), written through google-cloud-storage.

A sync or run pass only reads, and never imports the SDK (its import cost ~215 ms
and ~25 MB of RSS); publish, conditional control writes and reports use it. The
client's own retries are switched off (``retry=None`` on every call) so that
one policy, modelsync.retry, governs every storage call; this module only
translates the client's exceptions into modelsync's hierarchy and says which are
worth retrying.

Credentials are Application Default Credentials (Workload Identity, a service
account file in GOOGLE_APPLICATION_CREDENTIALS, gcloud user credentials), or
anonymous when ``endpoint`` (or STORAGE_EMULATOR_HOST) points at an emulator. They
are never logged. The client library is imported when a source first writes.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import structlog
from pydantic import BaseModel, Field

from modelsync.backends._gs_errors import (
    crc32c_header,
    mismatch,
    transcoded,
    translate,
)
from modelsync.backends._gs_json import GcsReader, items, parse_time
from modelsync.cancel import CancelToken
from modelsync.errors import (
    ModelsyncError,
    NotFoundError,
    PublishConflict,
    RefusedError,
    SourceError,
)
from modelsync.manifest import check_relpath, parse_version
from modelsync.retry import RetryPolicy
from modelsync.sources.base import Backend, Connections, ObjectInfo, Sink, Source
from modelsync.sources.control import UNCHANGED, Control, Unchanged, check_control_key
from modelsync.sources.environ import settle_environment
from modelsync.sources.listed import ListedChecksums, expected_checksum
from modelsync.sources.ranges import (
    BoundedBuffer,
    RangeOptions,
    RangeWriter,
    SinkWriter,
    fetch_ranges,
    object_key,
)

if TYPE_CHECKING:
    from google.cloud import storage

__all__ = ["BACKEND", "GcsOptions", "GcsSource"]

# Set on an answer GCS decompressed for us (decompressive transcoding).
_STORED_ENCODING = "X-Goog-Stored-Content-Encoding"


class GcsOptions(RangeOptions):
    """[models.source_options] of a gs:// source."""

    project: str | None = None
    # An explicit API endpoint (an emulator, or a proxy in tests); None means Google's.
    endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    http_pool_size: int = Field(default=64, ge=1, le=1024)


class _Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _GsBackend(Backend):
    name = "gs"
    schemes = ("gs",)
    example = "gs://bucket/prefix"
    options = GcsOptions

    def parse(self, url: str) -> str:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"gs source {url!r} names no bucket: gs://bucket/prefix")
        if parts.query or parts.fragment:
            raise ValueError(f"gs source {url!r} has a query or fragment: gs://bucket/prefix")
        return url.rstrip("/")

    def open(self, url: str, options: BaseModel, connections: Connections | None) -> Source:
        assert isinstance(options, GcsOptions)
        return GcsSource(url, options)


BACKEND = _GsBackend()


class GcsSource:
    """``gs://bucket/prefix`` → objects ``prefix/<version>/<name>``."""

    def __init__(
        self, url: str, options: GcsOptions | None = None, retry: RetryPolicy | None = None
    ) -> None:
        from modelsync.transport.deadline import Deadlines

        parts = urlsplit(url)
        self.url = url
        self.bucket_name = parts.netloc
        self.prefix = parts.path.strip("/")
        self.options = options or GcsOptions()
        self._retry = retry or RetryPolicy()
        self._client: storage.Client | None = None
        self._lock = threading.Lock()
        self._connections = Deadlines()
        self._reader = GcsReader(
            self.bucket_name, self.options.endpoint, self.options.http_pool_size, self._timeout
        )
        self._log = structlog.get_logger().bind(source=url)
        # The crc32c each object had in the latest listings (sources/listed.py).
        self._listed = ListedChecksums()

    # -- plumbing --------------------------------------------------------------

    def _bucket(self) -> storage.Bucket:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client.bucket(self.bucket_name)

    def _make_client(self) -> storage.Client:
        # Read by the client library when it is first imported: the per-bucket
        # tracing lookup costs a request per client that modelsync never uses.
        os.environ.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        from modelsync.transport.sessions import mount

        endpoint = self.options.endpoint
        try:
            if endpoint or os.environ.get("STORAGE_EMULATOR_HOST"):
                # Emulators take no credentials; real GCS never sees this branch.
                anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
                client = storage.Client(
                    project=self.options.project or "modelsync",
                    credentials=anonymous,
                    client_options={"api_endpoint": endpoint} if endpoint else None,
                )
            else:
                # The reader's credentials, looked up on the deadline layer's pools
                # (storage.Client's own lookup pings the metadata server unbounded).
                credentials = self._reader.credentials()
                client = storage.Client(project=self.options.project, credentials=credentials)
        except Exception as exc:
            raise translate(exc, self.url, self.bucket_name) from exc
        # Parallel downloads need more pooled connections than requests' default 10;
        # the pass's deadline cuts its connects and reads (modelsync.transport).
        mount(self._connections, client._http, self.options.http_pool_size)
        settle_environment(client._http, client.api_endpoint)
        return client

    @property
    def _timeout(self) -> tuple[float, float]:
        return (self.options.connect_timeout, self.options.read_timeout)

    def _key(self, version: int, name: str = "") -> str:
        return object_key(self.prefix, version, name)

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except ModelsyncError:
            raise
        except Exception as exc:
            raise translate(exc, what, self.bucket_name) from exc

    # -- the Source protocol ---------------------------------------------------

    def list_versions(self, cancel: CancelToken | None = None) -> list[int]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        prefixes: set[str] = set()
        for page in self._reader.list_pages(prefix, f"{self.url}: list", cancel, delimiter="/"):
            prefixes.update(p for p in page.get("prefixes") or [] if isinstance(p, str))
        versions = (parse_version(p[len(prefix) :].rstrip("/")) for p in prefixes)
        return sorted(v for v in versions if v is not None)

    def read_object(
        self, version: int, name: str, limit: int, cancel: CancelToken | None = None
    ) -> bytes | None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        what = f"gs://{self.bucket_name}/{self._key(version, name)}"
        buffer = BoundedBuffer(limit, what)
        try:
            self._stream_get(self._key(version, name), what, buffer, None, cancel)
        except NotFoundError:
            return None
        return buffer.value()

    def list_objects(self, version: int, cancel: CancelToken | None = None) -> list[ObjectInfo]:
        prefix = self._key(version)
        what = f"{self.url}/{version}: list"
        found = []
        for page in self._reader.list_pages(prefix, what, cancel):
            for item in items(page):
                name = item["name"][len(prefix) :]
                if not item["name"].startswith(prefix) or not name or name.endswith("/"):
                    continue
                found.append(_info(name, item, what))
        self._listed.remember(prefix, {f"{prefix}{o.name}": o.crc32c for o in found if o.crc32c})
        return found

    def fetch(self, version: int, name: str, sink: Sink, cancel: CancelToken) -> None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        key = self._key(version, name)
        what = f"gs://{self.bucket_name}/{key}"
        expected = sink.expected_size
        listed = self._listed.get(self._key(version), key)
        if expected is not None and expected >= self.options.range_threshold:
            self._fetch_ranges(key, what, sink, cancel, listed)
            return
        if self._stream_get(key, what, SinkWriter(sink, cancel), None, cancel, listed=listed):
            sink.vouch("crc32c")

    def _stream_get(
        self,
        key: str,
        what: str,
        writer: _Writer,
        byte_range: tuple[int, int] | None,
        cancel: CancelToken | None,
        params: dict[str, str] | None = None,
        listed: str | None = None,
    ) -> bool:
        """GET the object's media (the JSON API's download URL) through the transfer
        engine, on the client's endpoint and credentials. A whole-object GET is checked,
        as it streams, against the crc32c the server sends (X-Goog-Hash) or, when the
        answer carries none, against the one ``listed`` (an answer without its checksum
        is not an answer with nothing to check). True when a crc32c was compared and
        matched; False when none was (a range, or an answer saying it was transcoded,
        whose crc32c would describe other bytes): the caller vouches only on True."""
        import google_crc32c

        url = self._reader.object_url(key, params, media=True)
        extra = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else None
        crc = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
        answer = self._reader.get(
            url, what, writer.write, cancel, () if byte_range else (crc,), extra
        )
        if byte_range is not None or transcoded(answer.get(_STORED_ENCODING, "")):
            return False
        sent = crc32c_header(answer.get("X-Goog-Hash", ""))
        expected = expected_checksum(what, "crc32c", sent, listed)
        if expected is None:
            return False
        actual = base64.b64encode(crc.digest()).decode()  # type: ignore[no-untyped-call]
        if actual != expected:
            raise mismatch(what)
        return True

    def _fetch_ranges(
        self, key: str, what: str, sink: Sink, cancel: CancelToken, listed: str | None
    ) -> None:
        """Parallel byte ranges written in place, then one pass for sha256; the crc32c
        GCS states (or, failing that, the one listed) is checked against the one
        joined from the ranges' blocks."""
        meta = self._reader.metadata(key, what, cancel)
        if transcoded(str(meta.get("contentEncoding") or "")):
            # Stored gzip-compressed: GCS serves it decompressed and whole, whatever the
            # Range asks (decompressive transcoding), so it is one streamed GET; its
            # crc32c describes the stored bytes, so the manifest's sha256 decides (and
            # without a manifest, nothing vouches: transfer does not admit the file).
            self._stream_get(key, what, SinkWriter(sink, cancel), None, cancel, listed=listed)
            return
        size = _size(meta, what)
        crc32c = meta.get("crc32c")
        stored = expected_checksum(
            what, "crc32c", crc32c if isinstance(crc32c, str) else None, listed
        )

        def get_range(start: int, last: int, writer: RangeWriter, local: CancelToken) -> None:
            self._stream_get(key, f"{what} bytes {start}-{last}", writer, (start, last), local)

        crc = fetch_ranges(
            size=size,
            sink=sink,
            cancel=cancel,
            get_range=get_range,
            options=self.options,
            retry=self._retry,
            log=self._log,
            what=what,
        )
        actual = base64.b64encode(crc.to_bytes(4, "big")).decode()
        if stored and actual != stored:
            raise mismatch(what)
        if stored:
            sink.vouch("crc32c")

    def upload(self, version: int, name: str, path: Path, *, exclusive: bool = False) -> None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        key = self._key(version, name)
        # if_generation_match=0: only if no live object has the name (GCS's create-only
        # precondition; gcp-storage-emulator ignores it, real GCS honours it).
        condition: dict[str, Any] = {"if_generation_match": 0} if exclusive else {}
        with self._translated(f"gs://{self.bucket_name}/{key}"):
            self._bucket().blob(key).upload_from_filename(
                str(path), checksum="crc32c", retry=None, timeout=self._timeout, **condition
            )

    # -- control objects (sources/control.py) ---------------------------------------

    def get_control(
        self, key: str, limit: int, tag: str | None = None, cancel: CancelToken | None = None
    ) -> Control | Unchanged | None:
        from modelsync.transport.errors import HttpStatus

        full = f"{self.prefix}/{check_control_key(key)}" if self.prefix else key
        what = f"gs://{self.bucket_name}/{full}"
        # Metadata first, conditional on the generation already seen: GCS answers 304
        # with no body when nothing changed (gcp-storage-emulator ignores the
        # precondition and answers 200: the generation comparison below catches it).
        condition = {"ifGenerationNotMatch": tag} if tag and tag.isdigit() else {}
        try:
            meta = self._reader.metadata(full, what, cancel, condition)
        except NotFoundError:
            return None
        except ModelsyncError as exc:
            if isinstance(exc.__cause__, HttpStatus) and exc.__cause__.status == 304:
                return UNCHANGED
            raise
        generation = str(meta.get("generation"))
        if generation == tag:
            return UNCHANGED
        if _size(meta, what) > limit:
            raise RefusedError(f"{what}: larger than {limit} bytes")
        buffer = BoundedBuffer(limit, what)
        try:
            # The bytes of the generation just described, or nothing: a write in
            # between answers 412 and the next pass reads the new one.
            self._stream_get(full, what, buffer, None, cancel, {"ifGenerationMatch": generation})
        except NotFoundError:
            return None
        return Control(buffer.value(), generation)

    def put_control(self, key: str, data: bytes, *, match: str | None = None) -> str:
        full = f"{self.prefix}/{check_control_key(key)}" if self.prefix else key
        what = f"gs://{self.bucket_name}/{full}"
        condition: dict[str, Any] = {}
        if match is not None:
            # 0: only if absent. gcp-storage-emulator ignores preconditions; GCS keeps them.
            condition["if_generation_match"] = int(match) if match else 0
        blob = self._bucket().blob(full)
        try:
            with self._translated(what):
                blob.upload_from_string(
                    data,
                    content_type="application/json",
                    checksum="crc32c",
                    retry=None,
                    timeout=self._timeout,
                    **condition,
                )
        except PublishConflict:
            raise PublishConflict(f"{what}: changed by someone else since it was read") from None
        return str(blob.generation)

    def list_control(self, prefix: str, cancel: CancelToken | None = None) -> dict[str, str]:
        base = f"{self.prefix}/" if self.prefix else ""
        full = base + check_control_key(prefix)
        what = f"gs://{self.bucket_name}/{full}"
        return {
            item["name"][len(base) :]: str(item.get("generation"))
            for page in self._reader.list_pages(full, what, cancel)
            for item in items(page)
            if item["name"].startswith(base)
        }

    def close(self) -> None:
        self._reader.close()
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _size(meta: dict[str, Any], what: str) -> int:
    """An object resource's size (the JSON API writes it as a decimal string)."""
    try:
        size = int(meta.get("size") or 0)
    except (TypeError, ValueError):
        raise SourceError(f"{what}: the storage API gave no size") from None
    if size < 0:
        raise SourceError(f"{what}: the storage API gave a negative size")
    return size


def _info(name: str, item: dict[str, Any], what: str) -> ObjectInfo:
    try:
        updated = parse_time(str(item.get("updated")))
    except ValueError:
        raise SourceError(f"{what}: {name}: the storage API gave no update time") from None
    crc = item.get("crc32c")
    return ObjectInfo(name, _size(item, what), updated, crc if isinstance(crc, str) else None)
