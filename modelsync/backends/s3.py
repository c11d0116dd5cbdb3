"""s3://bucket/prefix: Amazon S3 and S3-compatible stores (MinIO, Ceph, R2) via botocore.

Credentials come from botocore's standard chain (boto3's): IRSA or EKS Pod
Identity, the AWS_* variables, the shared config and credentials files
(``profile``), an instance profile. ``endpoint_url`` points it at an S3-compatible
store. botocore's own retries are off (one attempt per call) so that modelsync.retry
is the one policy, as for gs://; this module translates botocore's errors into
modelsync's hierarchy.

Integrity: the manifest's sha256 always; on top, S3's own checksum of the object
where it has one (``x-amz-checksum-crc32c``/``crc32``/``sha256`` of the whole
object), else the ETag when it is a plain MD5 (single-part, not SSE-KMS or SSE-C).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import structlog
from pydantic import BaseModel, Field

from modelsync.backends._s3_checksums import Checks
from modelsync.backends._s3_errors import translate
from modelsync.cancel import CancelToken
from modelsync.errors import (
    ModelsyncError,
    NotFoundError,
    PublishConflict,
    RefusedError,
)
from modelsync.manifest import check_relpath, parse_version
from modelsync.retry import RetryPolicy
from modelsync.sources.base import Backend, Connections, Hasher, ObjectInfo, Sink, Source
from modelsync.sources.control import UNCHANGED, Control, Unchanged, check_control_key
from modelsync.sources.listed import ListedChecksums
from modelsync.sources.ranges import (
    BoundedBuffer,
    RangeOptions,
    RangeWriter,
    SinkWriter,
    fetch_ranges,
    object_key,
)

if TYPE_CHECKING:
    from modelsync.transport.deadline import Deadlines
    from modelsync.transport.engine import Engine

# A presigned GET is used at once; its lifetime only has to outlast a slow first byte.
_PRESIGN_SECONDS = 3600

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
        self._listed = ListedChecksums()  # each object's ETag in the latest listings

    # -- plumbing --------------------------------------------------------------

    def _s3(self) -> Any:
        return self._pair()[0]

    def _tracker(self, cancel: CancelToken | None) -> Deadlines:
        return self._pair(cancel)[1]

    def _pair(self, cancel: CancelToken | None = None) -> tuple[Any, Deadlines, Engine]:
        # Made (its first credentials loaded) within the pass's deadline: Connections.
        made: tuple[Any, Deadlines, Engine] = self._shared.get(
            ("s3", self.options.model_dump_json()), self._make_client, _close, cancel
        )
        return made

    def _make_client(self) -> tuple[Any, Deadlines, Engine]:
        from modelsync.backends._aws import s3_client

        return s3_client(self.options, self.url, self.bucket)

    def _key(self, version: int, name: str = "") -> str:
        return object_key(self.prefix, version, name)

    @contextlib.contextmanager
    def _translated(self, what: str, cancel: CancelToken | None = None) -> Iterator[None]:
        try:
            if cancel is not None:
                self._fresh_credentials(cancel)
            yield
        except ModelsyncError:
            raise
        except Exception as exc:
            if cancel is not None:
                cancel.check()  # a stream cut by the deadline watcher: Cancelled
            raise self._refusal(exc, what) or translate(exc, what, self.bucket) from exc

    def _fresh_credentials(self, cancel: CancelToken) -> None:
        """Refresh the client's credentials, when due, within the pass's deadline.

        botocore refreshes them inside the call that signs (a list, a presigned URL),
        through a client it makes for the purpose (STS for IRSA) whose pools the
        deadline layer never sees: a hung STS (or a proxy in front of it) held the
        pass for its 60 s reads, retried. Refreshed first, on a helper thread that
        the pass stops waiting for at its deadline (transport/deadline.py, bounded).
        """
        from modelsync.transport.deadline import bounded

        credentials = getattr(self._s3()._request_signer, "_credentials", None)
        due = getattr(credentials, "refresh_needed", None)
        if credentials is not None and callable(due) and due():
            bounded(credentials.get_frozen_credentials, cancel)

    def _refusal(self, exc: Exception, what: str) -> ModelsyncError | None:
        """A proxy's 407 to botocore as one line naming the proxy (transport/proxies.py)."""
        from modelsync.transport.proxies import refusal, says_407

        if not says_407(exc):
            return None
        return refusal(exc, what, str(self._s3().meta.endpoint_url))

    def _get(
        self,
        key: str,
        what: str,
        write: Callable[[bytes], object],
        cancel: CancelToken | None,
        byte_range: tuple[int, int] | None = None,
        listed: str | None = None,
    ) -> Checks:
        """GET the object (or a range) through the transfer engine, feeding the storage
        checksums its headers offer (a range's are not the object's: none then);
        returns them. botocore presigns the URL with the client's credentials and
        addressing (no network call); the bytes never pass through botocore."""
        from modelsync.transport.errors import HttpStatus

        client, _, engine = self._pair(cancel)
        with self._translated(what, cancel):
            url = client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=_PRESIGN_SECONDS,
            )
        headers: dict[str, str] = {}
        # SigV4 signs the header the before-sign hook added (it must then be sent);
        # SigV2 and unsigned URLs carry it in the query already.
        if "x-amz-checksum-mode" in url.partition("X-Amz-SignedHeaders=")[2].split("&")[0]:
            headers["x-amz-checksum-mode"] = "ENABLED"
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        found: list[Checks] = []

        def hashers(answer: Mapping[str, str]) -> list[Hasher]:
            found.append(Checks(answer, listed) if byte_range is None else Checks({}))
            return found[0].hashers

        try:
            engine.get(url, headers, write, cancel, what, hashers)
        except HttpStatus as exc:
            raise translate(exc, what, self.bucket) from exc
        return found[0]

    # -- the Source protocol ---------------------------------------------------

    def list_versions(self, cancel: CancelToken | None = None) -> list[int]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        found: set[str] = set()
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        with self._tracker(cancel).deadline(cancel), self._translated(f"{self.url}: list", cancel):
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
        found, etags = [], {}
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        with (
            self._tracker(cancel).deadline(cancel),
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
                    etags[item["Key"]] = str(item.get("ETag") or "")
                if not page.get("IsTruncated"):
                    break
                args["ContinuationToken"] = page["NextContinuationToken"]
        self._listed.remember(prefix, {k: v for k, v in etags.items() if v})
        return found

    def fetch(self, version: int, name: str, sink: Sink, cancel: CancelToken) -> None:
        check_relpath(name, f"{self.url}/{version}", reserved_ok=True)
        key = self._key(version, name)
        what = f"s3://{self.bucket}/{key}"
        expected = sink.expected_size
        listed = self._listed.get(self._key(version), key)
        if expected is not None and expected >= self.options.range_threshold:
            self._fetch_ranges(key, what, sink, cancel, listed)
            return
        sink.vouch(
            self._get(key, what, SinkWriter(sink, cancel).write, cancel, None, listed).check(what)
        )

    def _fetch_ranges(
        self, key: str, what: str, sink: Sink, cancel: CancelToken, listed: str | None
    ) -> None:
        """Parallel byte ranges written in place, then one pass for the checksums."""
        with self._tracker(cancel).deadline(cancel), self._translated(what, cancel):
            head = self._s3().head_object(Bucket=self.bucket, Key=key)
        checks = Checks(head["ResponseMetadata"].get("HTTPHeaders", {}), listed)

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
        sink.vouch(checks.check(what))

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
            from boto3.s3.transfer import S3Transfer, TransferConfig

            # Multipart past the range threshold (a single PUT stops at 5 GB).
            transfer = TransferConfig(
                multipart_threshold=self.options.range_threshold,
                multipart_chunksize=self.options.range_size,
                max_concurrency=self.options.range_workers,
            )
            # boto3's transfer manager on the botocore client (what boto3's injected
            # upload_file runs); boto3 is imported by publish only.
            with S3Transfer(self._s3(), transfer) as uploads:
                uploads.upload_file(
                    str(path), self.bucket, key, extra_args={"ChecksumAlgorithm": "SHA256"}
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
        with self._tracker(cancel).deadline(cancel), self._translated(what, cancel):
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
            self._tracker(cancel).deadline(cancel),
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


def _close(made: tuple[Any, Deadlines, Engine]) -> None:
    made[2].close()
    made[0].close()
