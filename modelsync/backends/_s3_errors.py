"""What S3's answers mean for modelsync (backends/s3.py): botocore's exceptions and
the transfer engine's HttpStatus translated into modelsync's hierarchy, one line
each, saying whether they are worth retrying."""

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
    if isinstance(exc, HttpStatus):
        exc = _client_error(exc)
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


def _client_error(exc: HttpStatus) -> BaseException:
    """The engine's HttpStatus as the ClientError botocore would have raised (S3 names
    the error in its XML body: <Code>NoSuchKey</Code>), so one translation serves both."""
    import botocore.exceptions as bex

    code = re.search(rb"<Code>([^<]{1,64})</Code>", exc.body)
    message = re.search(rb"<Message>([^<]{0,200})</Message>", exc.body)
    error = {
        "Code": code[1].decode(errors="replace") if code else str(exc.status),
        "Message": message[1].decode(errors="replace") if message else "",
    }
    failure: BaseException = bex.ClientError(
        {"Error": error, "ResponseMetadata": {"HTTPStatusCode": exc.status}},
        "GetObject",
    )
    return failure
