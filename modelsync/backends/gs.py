"""gs://bucket/prefix: Google Cloud Storage through google-cloud-storage.

The client's own retries are switched off (``retry=None`` on every call) so that
one policy, modelsync.retry, governs every storage call; this module only
translates the client's exceptions into modelsync's hierarchy and says which are
worth retrying.

Credentials are Application Default Credentials (Workload Identity, a service
account file in GOOGLE_APPLICATION_CREDENTIALS, gcloud user credentials), or
anonymous when ``endpoint`` (or STORAGE_EMULATOR_HOST) points at an emulator. They
are never logged. The client library is imported when a source first connects.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import structlog
from pydantic import BaseModel, Field

from modelsync.backends._gs_errors import crc32c_header, mismatch, translate
from modelsync.cancel import CancelToken
from modelsync.errors import (
    ModelsyncError,
    NotFoundError,
    PublishConflict,
    RefusedError,
)
from modelsync.manifest import check_relpath, parse_version
from modelsync.retry import RetryPolicy
from modelsync.sources.base import Backend, Connections, ObjectInfo, Sink, Source
from modelsync.sources.control import UNCHANGED, Control, Unchanged, check_control_key
from modelsync.sources.environ import settle_environment
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

    from modelsync.transport.engine import Engine

__all__ = ["BACKEND", "GcsOptions", "GcsSource"]


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
        self._engine: Engine | None = None
        self._auth_lock = threading.Lock()
        self._auth_request: Any = None
        self._log = structlog.get_logger().bind(source=url)

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

        from modelsync.transport.sdk import mount

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
                client = storage.Client(project=self.options.project)
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
        with self._connections.deadline(cancel), self._translated(f"{self.url}: list"):
            bucket = self._bucket()
            pages = bucket.client.list_blobs(
                bucket, prefix=prefix, delimiter="/", retry=None, timeout=self._timeout
            )
            for _ in pages:
                pass
            prefixes: set[str] = set(pages.prefixes)
        versions = (parse_version(p[len(prefix) :].rstrip("/")) for p in prefixes)
        return sorted(v for v in versions if v is not None)

    def read_object(
        self, version: int, name: str, limit: int, cancel: CancelToken | None = None
    ) -> bytes | None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        what = f"gs://{self.bucket_name}/{self._key(version, name)}"
        buffer = BoundedBuffer(limit, what)
        try:
            with self._connections.deadline(cancel), self._translated(what):
                self._bucket().blob(self._key(version, name)).download_to_file(
                    buffer, checksum="crc32c", retry=None, timeout=self._timeout
                )
        except NotFoundError:
            return None
        return buffer.value()

    def list_objects(self, version: int, cancel: CancelToken | None = None) -> list[ObjectInfo]:
        prefix = self._key(version)
        found = []
        with self._connections.deadline(cancel), self._translated(f"{self.url}/{version}: list"):
            bucket = self._bucket()
            for blob in bucket.client.list_blobs(
                bucket, prefix=prefix, retry=None, timeout=self._timeout
            ):
                name = blob.name[len(prefix) :]
                if not name or name.endswith("/"):
                    continue
                found.append(ObjectInfo(name, int(blob.size or 0), blob.updated, blob.crc32c))
        return found

    def fetch(self, version: int, name: str, sink: Sink, cancel: CancelToken) -> None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        key = self._key(version, name)
        what = f"gs://{self.bucket_name}/{key}"
        expected = sink.expected_size
        if expected is not None and expected >= self.options.range_threshold:
            self._fetch_ranges(key, what, sink, cancel)
            return
        self._stream_get(key, what, SinkWriter(sink, cancel), None, cancel)

    def _stream_get(
        self,
        key: str,
        what: str,
        writer: _Writer,
        byte_range: tuple[int, int] | None,
        cancel: CancelToken | None,
    ) -> None:
        """GET the object's media (the JSON API's download URL) through the transfer
        engine, on the client's endpoint and credentials. A whole-object GET is checked
        against the crc32c the server sends (X-Goog-Hash), computed as it streams."""
        import google_crc32c

        from modelsync.transport.errors import HttpStatus

        engine, endpoint = self._media()
        url = (
            f"{endpoint}/download/storage/v1/b/{self.bucket_name}/o/{quote(key, safe='')}?alt=media"
        )
        headers = self._auth_headers(url)
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        crc = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
        try:
            answer = engine.get(
                url, headers, writer.write, cancel, what, () if byte_range else (crc,)
            )
        except HttpStatus as exc:
            raise translate(exc, what, self.bucket_name) from exc
        expected = crc32c_header(answer.get("X-Goog-Hash", ""))
        if byte_range is None and expected is not None:
            actual = base64.b64encode(crc.digest()).decode()  # type: ignore[no-untyped-call]
            if actual != expected:
                raise mismatch(what)

    def _media(self) -> tuple[Engine, str]:
        """The transfer engine of this source and the endpoint it reads from."""
        from modelsync.transport.engine import Engine

        client = self._bucket().client
        with self._lock:
            if self._engine is None:
                self._engine = Engine(
                    self.options.http_pool_size,
                    self.options.connect_timeout,
                    self.options.read_timeout,
                )
            return self._engine, str(client.api_endpoint)

    def _auth_headers(self, url: str) -> dict[str, str]:
        """The client's credentials applied to one GET (refreshed when expired; the
        lock keeps threads from refreshing one token at once)."""
        import google.auth.transport.requests

        headers = {"Accept-Encoding": "identity"}
        credentials = self._bucket().client._credentials
        with self._auth_lock:
            if self._auth_request is None:
                self._auth_request = google.auth.transport.requests.Request()
            with self._translated(url):
                credentials.before_request(self._auth_request, "GET", url, headers)
        return headers

    def _fetch_ranges(self, key: str, what: str, sink: Sink, cancel: CancelToken) -> None:
        """Parallel byte ranges written in place, then one pass for crc32c and sha256."""
        import google_crc32c

        meta = self._bucket().blob(key)
        with self._connections.deadline(cancel), self._translated(what):
            meta.reload(retry=None, timeout=self._timeout)

        def get_range(start: int, last: int, writer: RangeWriter, local: CancelToken) -> None:
            self._stream_get(key, f"{what} bytes {start}-{last}", writer, (start, last), local)

        crc = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
        fetch_ranges(
            size=int(meta.size or 0),
            sink=sink,
            cancel=cancel,
            get_range=get_range,
            options=self.options,
            retry=self._retry,
            log=self._log,
            what=what,
            hashers=[crc],
        )
        actual = base64.b64encode(crc.digest()).decode()  # type: ignore[no-untyped-call]
        if meta.crc32c and actual != meta.crc32c:
            raise mismatch(what)

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
        from google.api_core import exceptions as api_exceptions

        full = f"{self.prefix}/{check_control_key(key)}" if self.prefix else key
        what = f"gs://{self.bucket_name}/{full}"
        blob = self._bucket().blob(full)
        # Metadata first, conditional on the generation already seen: GCS answers 304
        # with no body when nothing changed (gcp-storage-emulator ignores the
        # precondition and answers 200: the generation comparison below catches it).
        condition = {"if_generation_not_match": int(tag)} if tag and tag.isdigit() else {}
        with self._connections.deadline(cancel), self._translated(what):
            try:
                blob.reload(retry=None, timeout=self._timeout, **condition)
            except api_exceptions.NotModified:
                return UNCHANGED
            except api_exceptions.NotFound:
                return None
            generation = str(blob.generation)
            if generation == tag:
                return UNCHANGED
            if int(blob.size or 0) > limit:
                raise RefusedError(f"{what}: larger than {limit} bytes")
            try:
                data = blob.download_as_bytes(
                    checksum="crc32c",
                    retry=None,
                    timeout=self._timeout,
                    if_generation_match=blob.generation,
                )
            except api_exceptions.NotFound:
                return None
        if len(data) > limit:
            raise RefusedError(f"{what}: larger than {limit} bytes")
        return Control(data, generation)

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
        with (
            self._connections.deadline(cancel),
            self._translated(f"gs://{self.bucket_name}/{full}"),
        ):
            bucket = self._bucket()
            return {
                blob.name[len(base) :]: str(blob.generation)
                for blob in bucket.client.list_blobs(
                    bucket, prefix=full, retry=None, timeout=self._timeout
                )
            }

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None
            if self._client is not None:
                self._client.close()
                self._client = None
