"""az://account/container/prefix (or https://<account>.blob.core.windows.net/container/
prefix): Azure Blob Storage through azure-storage-blob.

Credentials: ``connection_string`` (or AZURE_STORAGE_CONNECTION_STRING; emulators
such as Azurite), else DefaultAzureCredential: workload identity on AKS, a managed
identity, the AZURE_CLIENT_ID/TENANT_ID/CLIENT_SECRET variables, the Azure CLI.
The SDK's own retries are off (``retry_total=0``) so that modelsync.retry is the one
policy, as for gs:// and s3://; this module translates the SDK's errors.

Integrity: the manifest's sha256 always; on top, the blob's Content-MD5 where it has
one (Azure sets it for single-shot uploads; ``modelsync publish`` sets it always).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
from pydantic import BaseModel, Field, SecretStr

from modelsync.backends._az_errors import translate
from modelsync.cancel import CancelToken
from modelsync.errors import (
    IntegrityError,
    ModelsyncError,
    NotFoundError,
    PublishConflict,
    RefusedError,
)
from modelsync.manifest import check_relpath, parse_version
from modelsync.retry import RetryPolicy
from modelsync.sources.base import Backend, Connections, Hasher, ObjectInfo, Sink, Source
from modelsync.sources.control import UNCHANGED, Control, Unchanged, check_control_key
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
    from modelsync.backends._az_media import AzureMedia
    from modelsync.transport.engine import Engine

__all__ = ["BACKEND", "AzureOptions", "AzureSource"]

PUBLIC_HOST = ".blob.core.windows.net"
# Reads per request: small enough that a hostile blob cannot balloon memory, large
# enough that a request's overhead vanishes.
GET_SIZE = 4 * 1024 * 1024


class AzureOptions(RangeOptions):
    """[models.source_options] of an az:// source."""

    # "DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...;BlobEndpoint=...":
    # emulators and key-based access. Unset: AZURE_STORAGE_CONNECTION_STRING, else
    # DefaultAzureCredential against the account's endpoint.
    connection_string: SecretStr | None = None
    # The account's blob endpoint when it is not https://<account>.blob.core.windows.net
    # (sovereign clouds, private endpoints).
    account_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    max_pool_connections: int = Field(default=64, ge=1, le=1024)


class _AzBackend(Backend):
    name = "az"
    schemes = ("az", "https")
    example = "az://account/container/prefix"

    options = AzureOptions

    def claims(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme == "https":
            return (parts.hostname or "").endswith(PUBLIC_HOST)
        return parts.scheme == "az"

    def parse(self, url: str) -> str:
        account, container, _ = _split(url)
        if not account or not container:
            raise ValueError(
                f"az source {url!r} names no account or container: az://account/container/prefix"
            )
        if urlsplit(url).query or urlsplit(url).fragment:
            raise ValueError(f"az source {url!r}: no query (SAS tokens) or fragment in the URL")
        return url.rstrip("/")

    def open(self, url: str, options: BaseModel, connections: Connections | None) -> Source:
        assert isinstance(options, AzureOptions)
        return AzureSource(url, options)


BACKEND = _AzBackend()


def _split(url: str) -> tuple[str, str, str]:
    """(account, container, prefix) of either URL form."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if parts.scheme == "https":
        account = (parts.hostname or "").removesuffix(PUBLIC_HOST)
    else:
        account, _, path = f"{parts.netloc}/{path}".partition("/")
    container, _, prefix = path.partition("/")
    return account, container, prefix.strip("/")


class AzureSource:
    """``az://account/container/prefix`` → blobs ``prefix/<version>/<name>``."""

    def __init__(
        self, url: str, options: AzureOptions | None = None, retry: RetryPolicy | None = None
    ) -> None:
        from modelsync.transport.deadline import Deadlines

        self.url = url
        self.account, self.container_name, self.prefix = _split(url)
        self.options = options or AzureOptions()
        self._retry = retry or RetryPolicy()
        self._container: Any = None
        self._lock = threading.Lock()
        self._connections = Deadlines()
        self._engine: tuple[Engine, AzureMedia] | None = None
        self._log = structlog.get_logger().bind(source=url)
        self._listed = ListedChecksums()  # each blob's Content-MD5 in the latest listings

    # -- plumbing --------------------------------------------------------------

    def _client(self) -> Any:
        with self._lock:
            if self._container is None:
                self._container = self._make_client()
            return self._container

    def _make_client(self) -> Any:
        from modelsync.backends._az_client import container_client

        url = self.options.account_url or f"https://{self.account}{PUBLIC_HOST}"
        return container_client(self.options, self._connections, url, self.container_name, self.url)

    def _key(self, version: int, name: str = "") -> str:
        return object_key(self.prefix, version, name)

    def _what(self, key: str) -> str:
        return f"az://{self.account}/{self.container_name}/{key}"

    @contextlib.contextmanager
    def _call(self, what: str, cancel: CancelToken | None) -> Iterator[None]:
        """Bounded by ``cancel`` (a cut read is Cancelled) and translated."""
        with self._connections.deadline(cancel):
            try:
                yield
            except ModelsyncError:
                raise
            except Exception as exc:
                if cancel is not None:
                    cancel.check()
                raise self._refusal(exc, what) or translate(exc, what, self.container_name) from exc

    def _refusal(self, exc: Exception, what: str) -> ModelsyncError | None:
        """A proxy's 407 to the SDK as one line naming the proxy (transport/proxies.py)."""
        from modelsync.transport.proxies import refusal, says_407

        if not says_407(exc) or self._container is None:
            return None
        return refusal(exc, what, str(self._container.url))

    def _stream(
        self,
        key: str,
        what: str,
        write: Any,
        cancel: CancelToken | None,
        byte_range: tuple[int, int] | None = None,
    ) -> bytes | None:
        """GET the blob (or a range) through the transfer engine; returns the blob's
        Content-MD5 when the answer carries it (a whole-blob GET)."""
        from modelsync.transport.errors import HttpStatus

        engine, media = self._media()
        with self._call(what, cancel):
            url, headers = media.request(key)
        if byte_range is not None:
            headers["x-ms-range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        try:
            answer = engine.get(url, headers, write, cancel, what)
        except HttpStatus as exc:
            raise translate(exc, what, self.container_name) from exc
        md5 = answer.get("Content-MD5") if byte_range is None else None
        return base64.b64decode(md5) if md5 else None

    def _media(self) -> tuple[Engine, AzureMedia]:
        """The transfer engine of this source and where (and how) it reads blobs."""
        from modelsync.backends._az_media import AzureMedia
        from modelsync.transport.engine import Engine, requests_bundle

        container = self._client()
        with self._lock:
            if self._engine is None:
                opts = self.options
                media = AzureMedia(container)
                # azure-core's listing verifies with requests: the same bundle here.
                engine = Engine(
                    opts.max_pool_connections,
                    opts.connect_timeout,
                    opts.read_timeout,
                    requests_bundle(),
                )
                self._engine = (engine, media)
            return self._engine

    @staticmethod
    def _check_md5(
        what: str, sent: bytes | None, hasher: Any, listed: str | None = None
    ) -> str | None:
        """IntegrityError on a mismatch; "md5" when one was compared, None when the blob
        has no Content-MD5 (a block upload that set none)."""
        answer = base64.b64encode(sent).decode() if sent else None
        expected = expected_checksum(what, "md5", answer, listed)
        if not expected:
            return None
        if base64.b64encode(hasher.digest()).decode() != expected:
            raise IntegrityError(
                f"{what}: md5 checksum mismatch: damaged in transit; "
                "the next pass downloads it again"
            )
        return "md5"

    # -- the Source protocol ---------------------------------------------------

    def list_versions(self, cancel: CancelToken | None = None) -> list[int]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        with self._call(f"{self.url}: list", cancel):
            names = [item.name for item in self._client().walk_blobs(prefix, delimiter="/")]
        versions = (parse_version(n[len(prefix) :].rstrip("/")) for n in names if n.endswith("/"))
        return sorted(v for v in versions if v is not None)

    def read_object(
        self, version: int, name: str, limit: int, cancel: CancelToken | None = None
    ) -> bytes | None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        key = self._key(version, name)
        what = self._what(key)
        md5 = hashlib.md5(usedforsecurity=False)
        buffer = BoundedBuffer(limit, what, [md5])
        try:
            expected = self._stream(key, what, buffer.write, cancel)
        except NotFoundError:
            return None
        self._check_md5(what, expected, md5)
        return buffer.value()

    def list_objects(self, version: int, cancel: CancelToken | None = None) -> list[ObjectInfo]:
        prefix = self._key(version)
        found, md5s = [], {}
        with self._call(f"{self.url}/{version}: list", cancel):
            for blob in self._client().list_blobs(name_starts_with=prefix):
                name = blob.name[len(prefix) :]
                if not name or name.endswith("/"):
                    continue
                updated = blob.last_modified or datetime.fromtimestamp(0, UTC)
                found.append(ObjectInfo(name, int(blob.size or 0), updated))
                md5 = blob.content_settings.content_md5
                if md5:
                    md5s[blob.name] = base64.b64encode(bytes(md5)).decode()
        self._listed.remember(prefix, md5s)
        return found

    def fetch(self, version: int, name: str, sink: Sink, cancel: CancelToken) -> None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        key = self._key(version, name)
        what = self._what(key)
        expected = sink.expected_size
        listed = self._listed.get(self._key(version), key)
        if expected is not None and expected >= self.options.range_threshold:
            self._fetch_ranges(key, what, sink, cancel, listed)
            return
        writer = SinkWriter(sink, cancel)
        md5 = hashlib.md5(usedforsecurity=False)

        def write(data: bytes) -> None:
            md5.update(data)
            writer.write(data)

        sink.vouch(self._check_md5(what, self._stream(key, what, write, cancel), md5, listed))

    def _fetch_ranges(
        self, key: str, what: str, sink: Sink, cancel: CancelToken, listed: str | None
    ) -> None:
        """Parallel byte ranges written in place, then one pass for md5 and sha256."""
        with self._call(what, cancel):
            props = self._client().get_blob_client(key).get_blob_properties()
        expected = props.content_settings.content_md5
        md5 = hashlib.md5(usedforsecurity=False)

        def get_range(start: int, last: int, writer: RangeWriter, local: CancelToken) -> None:
            self._stream(key, f"{what} bytes {start}-{last}", writer.write, local, (start, last))

        hashers: list[Hasher] = [md5]
        fetch_ranges(
            size=int(props.size or 0),
            sink=sink,
            cancel=cancel,
            get_range=get_range,
            options=self.options,
            retry=self._retry,
            log=self._log,
            what=what,
            hashers=hashers,
        )
        sink.vouch(self._check_md5(what, bytes(expected) if expected else None, md5, listed))

    def upload(self, version: int, name: str, path: Path, *, exclusive: bool = False) -> None:
        from azure.storage.blob import ContentSettings

        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        key = self._key(version, name)
        md5 = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as handle:
            while chunk := handle.read(1024 * 1024):
                md5.update(chunk)
        with self._call(self._what(key), None), path.open("rb") as body:
            # overwrite=False sends If-None-Match: *: create-only, so two publishers
            # cannot both complete one version. Content-MD5 lets readers check bytes.
            self._client().upload_blob(
                key,
                body,
                overwrite=not exclusive,
                max_concurrency=self.options.range_workers,
                content_settings=ContentSettings(content_md5=bytearray(md5.digest())),
            )

    # -- control objects (sources/control.py) ---------------------------------------

    def get_control(
        self, key: str, limit: int, tag: str | None = None, cancel: CancelToken | None = None
    ) -> Control | Unchanged | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceModifiedError,
            ResourceNotFoundError,
            ResourceNotModifiedError,
        )

        full = f"{self.prefix}/{check_control_key(key)}" if self.prefix else key
        what = self._what(full)
        # If-None-Match on the ETag seen: 304 and no body when nothing changed.
        condition: dict[str, Any] = (
            {"etag": tag, "match_condition": MatchConditions.IfModified} if tag else {}
        )
        with self._call(what, cancel):
            try:
                downloader = self._client().download_blob(full, max_concurrency=1, **condition)
            except (ResourceNotModifiedError, ResourceModifiedError):
                # 304; the SDK names it "condition not met" (the only condition sent).
                return UNCHANGED
            except ResourceNotFoundError:
                return None
            if int(downloader.size or 0) > limit:
                raise RefusedError(f"{what}: larger than {limit} bytes")
            data = downloader.readall()
            etag = str(downloader.properties.etag)
        if len(data) > limit:
            raise RefusedError(f"{what}: larger than {limit} bytes")
        return Control(bytes(data), etag)

    def put_control(self, key: str, data: bytes, *, match: str | None = None) -> str:
        from azure.core import MatchConditions

        full = f"{self.prefix}/{check_control_key(key)}" if self.prefix else key
        what = self._what(full)
        args: dict[str, Any] = {"overwrite": True}
        if match == "":
            args = {"overwrite": False}  # If-None-Match: *
        elif match is not None:
            args.update(etag=match, match_condition=MatchConditions.IfNotModified)
        try:
            with self._call(what, None):
                blob = self._client().get_blob_client(full)
                result: dict[str, Any] = blob.upload_blob(data, **args)
        except PublishConflict:
            raise PublishConflict(f"{what}: changed by someone else since it was read") from None
        return str(result["etag"])

    def list_control(self, prefix: str, cancel: CancelToken | None = None) -> dict[str, str]:
        base = f"{self.prefix}/" if self.prefix else ""
        full = base + check_control_key(prefix)
        with self._call(self._what(full), cancel):
            return {
                blob.name[len(base) :]: str(blob.etag)
                for blob in self._client().list_blobs(name_starts_with=full)
            }

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine[0].close()
                self._engine = None
            if self._container is not None:
                self._container.close()
                self._container = None
