"""What Azure Blob Storage's answers mean for modelsync (backends/az.py): the SDK's
exceptions and the transfer engine's HttpStatus translated into modelsync's
hierarchy, one line each, saying whether they are worth retrying."""

from __future__ import annotations

import re

from modelsync.errors import (
    AccessDeniedError,
    ModelsyncError,
    NotFoundError,
    PublishConflict,
    SourceError,
    TransientSourceError,
)
from modelsync.sources.ranges import first_line
from modelsync.transport.errors import HttpStatus, network_error

__all__ = ["translate"]


def translate(exc: BaseException, what: str, container: str) -> ModelsyncError:
    """A modelsync error for an SDK exception: one line, retryable or not, with a hint."""
    from azure.core import exceptions as az

    if isinstance(exc, ModelsyncError):
        return exc
    if isinstance(exc, HttpStatus):
        exc = _response_error(exc)
    if type(exc).__name__ == "CredentialUnavailableError":
        return AccessDeniedError(
            f"{what}: no Azure credentials found: use workload identity, a managed identity, "
            "AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or "
            "source_options.connection_string"
        )
    if isinstance(exc, az.ClientAuthenticationError) and exc.status_code is None:
        # No HTTP answer: DefaultAzureCredential found no credential to use.
        return AccessDeniedError(
            f"{what}: no Azure credentials found: use workload identity, a managed "
            "identity, AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or "
            "source_options.connection_string"
        )
    if isinstance(exc, az.ClientAuthenticationError):
        return AccessDeniedError(
            f"{what}: access denied ({exc.status_code or 'credentials refused'}): grant the "
            f"identity 'Storage Blob Data Reader' on container {container} (Contributor "
            "to publish)"
        )
    if isinstance(exc, az.ResourceNotFoundError):
        code = getattr(exc, "error_code", None) or 404
        return NotFoundError(f"{what}: not found ({code}): check the account and container")
    if isinstance(exc, az.ResourceExistsError | az.ResourceModifiedError):
        return PublishConflict(f"{what}: already exists (HTTP 409): written by someone else")
    if isinstance(exc, az.HttpResponseError):
        status = int(exc.status_code or 0)
        error_code = str(getattr(exc, "error_code", None) or "")
        code = (
            f"{error_code} HTTP {status}"
            if error_code not in ("", str(status))
            else f"HTTP {status}"
        )
        if status in (401, 403):
            return AccessDeniedError(
                f"{what}: access denied ({code}): grant the identity "
                f"'Storage Blob Data Reader' on container {container}"
            )
        if status == 404:
            return NotFoundError(f"{what}: not found ({code}): check the account and container")
        if status in (408, 429) or status >= 500:
            return TransientSourceError(f"{what}: {code}")
        return SourceError(f"{what}: {code}: {first_line(exc)}")
    line = network_error(exc, what)
    if line is not None:
        return line
    if isinstance(exc, az.AzureError | ConnectionError | TimeoutError | OSError):
        # ServiceRequestError, ServiceResponseError, IncompleteReadError, DecodeError:
        # the connection failed or broke mid-body.
        return TransientSourceError(f"{what}: {type(exc).__name__}: {first_line(exc)}")
    if type(exc).__module__.startswith(("requests", "urllib3")):
        return TransientSourceError(f"{what}: {type(exc).__name__}: {first_line(exc)}")
    return SourceError(f"{what}: {type(exc).__name__}: {first_line(exc)}")


def _response_error(exc: HttpStatus) -> BaseException:
    """The engine's HttpStatus as the SDK's HttpResponseError (Azure names the error in
    its XML body: <Code>BlobNotFound</Code>), so one translation serves both."""
    from azure.core import exceptions as az

    code = re.search(rb"<Code>([^<]{1,64})</Code>", exc.body)
    error = az.HttpResponseError(message=str(exc))
    error.status_code = exc.status
    # read back by translate through getattr, as on the SDK's own errors
    error.error_code = code[1].decode(errors="replace") if code else None  # type: ignore[attr-defined]
    return error
