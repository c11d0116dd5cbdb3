"""A botocore session for S3 and SQS/SNS clients, without importing boto3, and the S3
client made from one.

boto3's Session adds resources and the injected transfer helpers (``upload_file``),
none of which modelsync reads through; importing it costs every S3 command 0.14 s
(``python -c 'import boto3'`` 0.34 s against ``import botocore.session`` 0.20 s,
docs/performance.md). Credentials, profiles, regions and AWS_CA_BUNDLE are botocore's
in either case, so the chain an operator configured is the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelsync.backends.s3 import S3Options
    from modelsync.transport.deadline import Deadlines
    from modelsync.transport.engine import Engine

__all__ = ["s3_client", "session"]


def session(profile: str | None, region: str | None) -> Any:
    """A fresh botocore session (sessions are not thread-safe; their clients are)."""
    import botocore.session

    from modelsync.backends._aws_loader import install

    made = botocore.session.Session(profile=profile)
    install(made)
    if region:
        made.set_config_variable("region", region)
    return made


def s3_client(options: S3Options, url: str, bucket: str) -> tuple[Any, Deadlines, Engine]:
    """The S3 client for ``options``, wired to a deadline tracker, and the transfer
    engine for its objects' bytes, trusting the CA bundle botocore trusts."""
    import botocore
    import botocore.config

    from modelsync.backends._s3_errors import translate
    from modelsync.transport.deadline import Deadlines
    from modelsync.transport.engine import CaBundle, Engine
    from modelsync.transport.sdk import wire_botocore

    config = botocore.config.Config(
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        max_pool_connections=options.max_pool_connections,
        retries={"total_max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": options.addressing_style},
        # Checksums are asked for and checked here (crc32c needs no extra package).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # s3v4 is what botocore signs requests with anyway; said explicitly because
        # its presigned URLs (the engine's GETs) otherwise fall back to SigV2, which
        # regions opened since 2014 refuse.
        signature_version=botocore.UNSIGNED if options.anonymous else "s3v4",
    )
    try:
        # A session per client: sessions are not thread-safe, clients are.
        made = session(options.profile, options.region)
        client = made.create_client("s3", endpoint_url=options.endpoint_url, config=config)
    except Exception as exc:
        raise translate(exc, url, bucket) from exc

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
    # The bundle botocore verifies with when one is named (AWS_CA_BUNDLE, or
    # ca_bundle in the profile), so listings and the engine's GETs agree.
    named = made.get_config_variable("ca_bundle")
    bundle = CaBundle.named(named, "AWS_CA_BUNDLE (or the profile's ca_bundle)")
    engine = Engine(
        options.max_pool_connections, options.connect_timeout, options.read_timeout, bundle
    )
    return client, tracker, engine
