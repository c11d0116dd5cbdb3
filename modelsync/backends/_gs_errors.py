"""What Google Cloud Storage's answers mean for modelsync (backends/gs.py): its
client's exceptions and the transfer engine's HttpStatus translated into modelsync's
hierarchy, one line each, saying whether they are worth retrying; and when an
answer's crc32c does not describe its bytes (transcoded)."""

from __future__ import annotations

import sys

from modelsync.errors import (
    AccessDeniedError,
    IntegrityError,
    ModelsyncError,
    NotFoundError,
    PublishConflict,
    SourceError,
    TransientSourceError,
)
from modelsync.sources.ranges import first_line
from modelsync.transport.errors import network_error

__all__ = ["crc32c_header", "mismatch", "transcoded", "translate"]


def _transient_exceptions() -> tuple[type[BaseException], ...]:
    import http.client

    import google.auth.exceptions
    import requests
    import urllib3.exceptions

    return (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.ReadTimeoutError,
        http.client.IncompleteRead,
        ConnectionError,
        TimeoutError,
        google.auth.exceptions.TransportError,
    )


def _sdk_loaded() -> bool:
    # An exception of the SDK's types exists only once the SDK is imported; a pass
    # that reads through the JSON API (_gs_json.py) must not import it to translate.
    return "google.cloud.storage" in sys.modules


def _status_of(exc: BaseException) -> int | None:
    from modelsync.transport.errors import HttpStatus

    if isinstance(exc, HttpStatus):
        return exc.status
    if not _sdk_loaded():
        return None
    from google.api_core import exceptions as api_exceptions
    from google.cloud.storage.exceptions import InvalidResponse

    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return int(exc.code) if exc.code is not None else None
    if isinstance(exc, InvalidResponse):
        status = getattr(exc.response, "status_code", None)
        return int(status) if status is not None else None
    return None


def _data_corruption() -> type[BaseException]:
    from google.cloud.storage.exceptions import DataCorruption

    return DataCorruption  # type: ignore[no-any-return]


def translate(exc: BaseException, what: str, bucket: str) -> ModelsyncError:
    """A modelsync error for a client exception: one line, retryable or not, with a hint."""
    import google.auth.exceptions

    if isinstance(exc, ModelsyncError):
        return exc
    if _sdk_loaded() and isinstance(exc, _data_corruption()):
        return IntegrityError(
            f"{what}: crc32c checksum mismatch: damaged in transit; "
            "the next pass downloads it again"
        )
    if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
        return AccessDeniedError(
            f"{what}: no Google credentials found: use Workload Identity, set "
            "GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`"
        )
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return AccessDeniedError(f"{what}: credentials were refused: {type(exc).__name__}")
    status = _status_of(exc)
    if status in (401, 403):
        return AccessDeniedError(
            f"{what}: access denied (HTTP {status}): grant the service account "
            f"roles/storage.objectViewer (or storage.objects.get and storage.objects.list) "
            f"on bucket {bucket}"
        )
    if status == 404:
        return NotFoundError(f"{what}: not found (HTTP 404): check the bucket and prefix")
    if status == 412:
        return PublishConflict(f"{what}: already exists (HTTP 412): written by someone else")
    if status is not None and (status == 429 or status == 408 or status >= 500):
        return TransientSourceError(f"{what}: HTTP {status}")
    if isinstance(exc, _transient_exceptions()):
        return network_error(exc, what) or TransientSourceError(
            f"{what}: {type(exc).__name__}: {first_line(exc)}"
        )
    if status is not None:
        return SourceError(f"{what}: HTTP {status}{_words(exc)}")
    return SourceError(f"{what}: {type(exc).__name__}: {first_line(exc)}")


def crc32c_header(value: str) -> str | None:
    """The crc32c in an X-Goog-Hash header ("crc32c=...,md5=..."), if any."""
    for part in value.split(","):
        name, _, digest = part.strip().partition("=")
        if name == "crc32c" and digest:
            return digest
    return None


def _words(exc: BaseException) -> str:
    """What the answer said besides its status, for the end of a line that already
    names the object and the status (the engine's HttpStatus carries both)."""
    from modelsync.transport.errors import HttpStatus

    if isinstance(exc, HttpStatus):
        text = exc.body.decode("utf-8", errors="replace").strip().splitlines()
        return f": {text[0][:200]}" if text else ""
    return f": {first_line(exc)}"


def mismatch(what: str) -> IntegrityError:
    return IntegrityError(
        f"{what}: crc32c checksum mismatch: damaged in transit; the next pass downloads it again"
    )


def transcoded(encoding: str) -> bool:
    """Whether an object stored with this Content-Encoding is served decompressed."""
    return encoding.strip().lower() == "gzip"
