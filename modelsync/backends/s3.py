"""s3://bucket/prefix: Amazon S3 and S3-compatible stores (MinIO, Ceph, R2) via boto3.

Credentials come from boto3's standard chain: IRSA or EKS Pod Identity, the AWS_*
variables, the shared config and credentials files (``profile``), an instance
profile. ``endpoint_url`` points it at an S3-compatible store. botocore's own
retries are off (one attempt per call) so that modelsync.retry is the one policy,
as for gs://; this module translates botocore's errors into modelsync's hierarchy.

Integrity: the manifest's sha256 always; on top, S3's own checksum of the object
where it has one (``x-amz-checksum-crc32c``/``crc32``/``sha256`` of the whole
object), else the ETag when it is a plain MD5 (single-part, not SSE-KMS or SSE-C).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import structlog
from pydantic import BaseModel, Field

from modelsync.backends._s3_checksums import Checks
from modelsync.cancel import CancelToken
from modelsync.errors import (
    AccessDeniedError,
    ModelsyncError,
    NotFoundError,
    PublishConflict,
    RefusedError,
    SourceError,
    TransientSourceError,
)
from modelsync.manifest import check_relpath, parse_version
from modelsync.retry import RetryPolicy
from modelsync.sources.base import Backend, Connections, ObjectInfo, Sink, Source
from modelsync.sources.control import UNCHANGED, Control, Unchanged, check_control_key
from modelsync.sources.ranges import (
    READ_SIZE,
    BoundedBuffer,
    RangeOptions,
    RangeWriter,
    SinkWriter,
    fetch_ranges,
    first_line,
    object_key,
)
from modelsync.transport.errors import network_error

if TYPE_CHECKING:
    from modelsync.transport.deadline import Deadlines

__all__ = ["BACKEND", "S3Options", "S3Source"]


class S3Options(RangeOptions):
    """[models.source_options] of an s3:// source."""

    # An S3-compatible store (MinIO, Ceph, R2, moto); None: AWS, by region.
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{2,32}$")
    # A profile of the shared config/credentials files; None: the default chain.
    profile: str | None = None
    # path: https://endpoint/bucket/key (most S3-compatible stores); virtual: bucket.host.
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # Public buckets: send no credentials at all.
    anonymous: bool = False
    max_pool_connections: int = Field(default=64, ge=1, le=1024)


_TRANSIENT_CODES = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "OperationAborted",
}
_DENIED_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}


def translate(exc: BaseException, what: str, bucket: str) -> ModelsyncError:
    """A modelsync error for a botocore exception: one line, retryable or not, a hint."""
    import botocore.exceptions as bex
    import urllib3.exceptions

    if isinstance(exc, ModelsyncError):
        return exc
    cause = exc.__cause__ or exc.__context__
    if type(exc).__name__ == "S3UploadFailedError" and isinstance(cause, Exception):
        return translate(cause, what, bucket)  # boto3's transfer wraps the real error
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return AccessDeniedError(
            f"{what}: no AWS credentials found: use IRSA or EKS Pod Identity, an instance "
            "profile, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or source_options.profile"
        )
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _DENIED_CODES or status in (401, 403):
            return AccessDeniedError(
                f"{what}: access denied ({code or status}): grant s3:ListBucket on "
                f"arn:aws:s3:::{bucket} and s3:GetObject on its objects (PutObject to publish)"
            )
        if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound") or status == 404:
            return NotFoundError(f"{what}: not found ({code or 404}): check the bucket and prefix")
        if code == "PreconditionFailed" or status == 412:
            return PublishConflict(f"{what}: already exists (HTTP 412): written by someone else")
        if code in _TRANSIENT_CODES or status in (408, 429) or status >= 500:
            return TransientSourceError(f"{what}: {code or 'HTTP'} ({status})")
        return SourceError(f"{what}: {code or 'HTTP'} ({status}): {error.get('Message', '')}")
    transient = (
        bex.EndpointConnectionError,
        bex.ConnectionClosedError,
        bex.ReadTimeoutError,
        bex.ConnectTimeoutError,
        bex.ResponseStreamingError,
        bex.IncompleteReadError,
        urllib3.exceptions.HTTPError,
        ConnectionError,
        TimeoutError,
    )
    line = network_error(exc, what)
    if line is not None:
        return line
    if isinstance(exc, transient):
        return TransientSourceError(f"{what}: {type(exc).__name__}: {first_line(exc)}")
    if isinstance(exc, OSError):  # a socket cut by the deadline watcher, a reset
        return TransientSourceError(f"{what}: {type(exc).__name__}: {first_line(exc)}")
    return SourceError(f"{what}: {type(exc).__name__}: {first_line(exc)}")


class _S3Backend(Backend):
    name = "s3"
    schemes = ("s3",)
    example = "s3://bucket/prefix"
    options = S3Options

    def parse(self, url: str) -> str:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"s3 source {url!r} names no bucket: s3://bucket/prefix")
        if parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError(f"s3 source {url!r}: use s3://bucket/prefix (no query or user)")
        return url.rstrip("/")

    def open(self, url: str, options: BaseModel, connections: Connections | None) -> Source:
        assert isinstance(options, S3Options)
        return S3Source(url, options, connections=connections)


BACKEND = _S3Backend()


class S3Source:
    """``s3://bucket/prefix`` → objects ``prefix/<version>/<name>``."""

    def __init__(
        self,
        url: str,
        options: S3Options | None = None,
        retry: RetryPolicy | None = None,
        connections: Connections | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.options = options or S3Options()
        self._retry = retry or RetryPolicy()
        # One client per options, shared by every model of the owner (a Syncer).
        self._shared = connections if connections is not None else Connections()
        self._owns_shared = connections is None
        self._log = structlog.get_logger().bind(source=url)

    # -- plumbing --------------------------------------------------------------

    def _s3(self) -> Any:
        return self._pair()[0]

    @property
    def _connections(self) -> Deadlines:
        return self._pair()[1]

    def _pair(self) -> tuple[Any, Deadlines]:
        pair: tuple[Any, Deadlines] = self._shared.get(
            ("s3", self.options.model_dump_json()),
            self._make_client,
            lambda made: made[0].close(),
        )
        return pair

    def _make_client(self) -> tuple[Any, Deadlines]:
        import boto3
        import botocore
        import botocore.config

        from modelsync.transport.deadline import Deadlines
        from modelsync.transport.sdk import wire_botocore

        opts = self.options
        config = botocore.config.Config(
            connect_timeout=opts.connect_timeout,
            read_timeout=opts.read_timeout,
            max_pool_connections=opts.max_pool_connections,
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": opts.addressing_style},
            # Checksums are asked for and checked here (crc32c needs no extra package).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            signature_version=botocore.UNSIGNED if opts.anonymous else None,
        )
        try:
            # A session per client: sessions are not thread-safe, clients are.
            session = boto3.session.Session(profile_name=opts.profile, region_name=opts.region)
            client = session.client("s3", endpoint_url=opts.endpoint_url, config=config)
        except Exception as exc:
            raise translate(exc, self.url, self.bucket) from exc

        # The pass's deadline cuts its connects and reads, proxies' pools included
        # (modelsync.transport).
        tracker = Deadlines()
        wire_botocore(tracker, client)

        def ask_for_checksums(request: Any, **_: Any) -> None:
            request.headers["x-amz-checksum-mode"] = "ENABLED"

        # Without botocore's own validation (which needs awscrt for crc32c), so the
        # headers come back and Checks verifies them.
        for event in ("before-sign.s3.GetObject", "before-sign.s3.HeadObject"):
            client.meta.events.register(event, ask_for_checksums)
        return client, tracker

    def _key(self, version: int, name: str = "") -> str:
        return object_key(self.prefix, version, name)

    @contextlib.contextmanager
    def _translated(self, what: str, cancel: CancelToken | None = None) -> Iterator[None]:
        try:
            yield
        except ModelsyncError:
            raise
        except Exception as exc:
            if cancel is not None:
                cancel.check()  # a stream cut by the deadline watcher: Cancelled
            raise translate(exc, what, self.bucket) from exc

    def _get(
        self,
        key: str,
        what: str,
        write: Callable[[bytes], object],
        cancel: CancelToken | None,
        byte_range: tuple[int, int] | None = None,
    ) -> Checks:
        """GET the object (or a range) in 1 MiB reads, feeding the storage checksums its
        headers offer (a range's are not the object's: none then); returns them."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range is not None:
            args["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        with self._connections.deadline(cancel), self._translated(what, cancel):
            response = self._s3().get_object(**args)
            headers = response["ResponseMetadata"].get("HTTPHeaders", {})
            checks = Checks(headers if byte_range is None else {})
            body = response["Body"]
            with contextlib.closing(body):
                for chunk in body.iter_chunks(READ_SIZE):
                    for hasher in checks.hashers:
                        hasher.update(chunk)
                    write(chunk)
        return checks

    # -- the Source protocol ---------------------------------------------------

    def list_versions(self, cancel: CancelToken | None = None) -> list[int]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        found: set[str] = set()
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        with self._connections.deadline(cancel), self._translated(f"{self.url}: list", cancel):
            while True:
                if cancel is not None:
                    cancel.check()
                page = self._s3().list_objects_v2(**args)
                found.update(p["Prefix"] for p in page.get("CommonPrefixes", ()))
                if not page.get("IsTruncated"):
                    break
                args["ContinuationToken"] = page["NextContinuationToken"]
        versions = (parse_version(p[len(prefix) :].rstrip("/")) for p in found)
        return sorted(v for v in versions if v is not None)

    def read_object(
        self, version: int, name: str, limit: int, cancel: CancelToken | None = None
    ) -> bytes | None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        what = f"s3://{self.bucket}/{self._key(version, name)}"
        buffer = BoundedBuffer(limit, what)
        try:
            checks = self._get(self._key(version, name), what, buffer.write, cancel)
        except NotFoundError:
            return None
        checks.check(what)
        return buffer.value()

    def list_objects(self, version: int, cancel: CancelToken | None = None) -> list[ObjectInfo]:
        prefix = self._key(version)
        found = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        with (
            self._connections.deadline(cancel),
            self._translated(f"{self.url}/{version}: list", cancel),
        ):
            while True:
                if cancel is not None:
                    cancel.check()
                page = self._s3().list_objects_v2(**args)
                for item in page.get("Contents", ()):
                    name = item["Key"][len(prefix) :]
                    if not name or name.endswith("/"):
                        continue
                    updated = item.get("LastModified") or datetime.fromtimestamp(0, UTC)
                    found.append(ObjectInfo(name, int(item.get("Size", 0)), updated))
                if not page.get("IsTruncated"):
                    break
                args["ContinuationToken"] = page["NextContinuationToken"]
        return found

    def fetch(self, version: int, name: str, sink: Sink, cancel: CancelToken) -> None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        key = self._key(version, name)
        what = f"s3://{self.bucket}/{key}"
        expected = sink.expected_size
        if expected is not None and expected >= self.options.range_threshold:
            self._fetch_ranges(key, what, sink, cancel)
            return
        self._get(key, what, SinkWriter(sink, cancel).write, cancel).check(what)

    def _fetch_ranges(self, key: str, what: str, sink: Sink, cancel: CancelToken) -> None:
        """Parallel byte ranges written in place, then one pass for the checksums."""
        with self._connections.deadline(cancel), self._translated(what, cancel):
            head = self._s3().head_object(Bucket=self.bucket, Key=key)
        checks = Checks(head["ResponseMetadata"].get("HTTPHeaders", {}))

        def get_range(start: int, last: int, writer: RangeWriter, local: CancelToken) -> None:
            self._get(key, f"{what} bytes {start}-{last}", writer.write, local, (start, last))

        fetch_ranges(
            size=int(head.get("ContentLength", 0)),
            sink=sink,
            cancel=cancel,
            get_range=get_range,
            options=self.options,
            retry=self._retry,
            log=self._log,
            what=what,
            hashers=checks.hashers,
        )
        checks.check(what)

    def upload(self, version: int, name: str, path: Path, *, exclusive: bool = False) -> None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        key = self._key(version, name)
        what = f"s3://{self.bucket}/{key}"
        with self._translated(what):
            if exclusive:
                # If-None-Match: * (S3 since 2024, MinIO, moto): create-only, so two
                # publishers cannot both complete one version. Manifests are small.
                with path.open("rb") as body:
                    self._s3().put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=body,
                        ChecksumAlgorithm="SHA256",
                        IfNoneMatch="*",
                    )
                return
            from boto3.s3.transfer import TransferConfig

            # Multipart past the range threshold (a single PUT stops at 5 GB).
            transfer = TransferConfig(
                multipart_threshold=self.options.range_threshold,
                multipart_chunksize=self.options.range_size,
                max_concurrency=self.options.range_workers,
            )
            self._s3().upload_file(
                str(path),
                self.bucket,
                key,
                ExtraArgs={"ChecksumAlgorithm": "SHA256"},
                Config=transfer,
            )

    # -- control objects (sources/control.py) ---------------------------------------

    def get_control(
        self, key: str, limit: int, tag: str | None = None, cancel: CancelToken | None = None
    ) -> Control | Unchanged | None:
        import botocore.exceptions as bex

        full = f"{self.prefix}/{check_control_key(key)}" if self.prefix else key
        what = f"s3://{self.bucket}/{full}"
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if tag:
            args["IfNoneMatch"] = tag  # 304, no body, when the ETag still matches
        with self._connections.deadline(cancel), self._translated(what, cancel):
            try:
                response = self._s3().get_object(**args)
            except bex.ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if status == 304 or code == "304":
                    return UNCHANGED
                if code in ("NoSuchKey", "404") or status == 404:
                    return None
                raise
            if int(response.get("ContentLength", 0)) > limit:
                response["Body"].close()
                raise RefusedError(f"{what}: larger than {limit} bytes")
            with contextlib.closing(response["Body"]) as body:
                data = body.read(limit + 1)
        if len(data) > limit:
            raise RefusedError(f"{what}: larger than {limit} bytes")
        return Control(data, str(response["ETag"]))

    def put_control(self, key: str, data: bytes, *, match: str | None = None) -> str:
        full = f"{self.prefix}/{check_control_key(key)}" if self.prefix else key
        what = f"s3://{self.bucket}/{full}"
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "Body": data}
        if match is not None:
            # S3's conditional writes (2024): If-Match on the ETag read, or create-only.
            args["IfMatch" if match else "IfNoneMatch"] = match or "*"
        try:
            with self._translated(what):
                response = self._s3().put_object(
                    ContentType="application/json", ChecksumAlgorithm="SHA256", **args
                )
        except PublishConflict:
            raise PublishConflict(f"{what}: changed by someone else since it was read") from None
        return str(response["ETag"])

    def list_control(self, prefix: str, cancel: CancelToken | None = None) -> dict[str, str]:
        base = f"{self.prefix}/" if self.prefix else ""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base + check_control_key(prefix)}
        found: dict[str, str] = {}
        with (
            self._connections.deadline(cancel),
            self._translated(f"s3://{self.bucket}/{args['Prefix']}", cancel),
        ):
            while True:
                page = self._s3().list_objects_v2(**args)
                for item in page.get("Contents", ()):
                    found[item["Key"][len(base) :]] = str(item.get("ETag", ""))
                if not page.get("IsTruncated"):
                    return found
                args["ContinuationToken"] = page["NextContinuationToken"]

    def close(self) -> None:
        if self._owns_shared:
            self._shared.close()
