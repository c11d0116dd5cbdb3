"""A botocore session for S3 and SQS/SNS clients, without importing boto3.

boto3's Session adds resources and the injected transfer helpers (``upload_file``),
none of which modelsync reads through; importing it costs every S3 command 0.14 s
(``python -c 'import boto3'`` 0.34 s against ``import botocore.session`` 0.20 s,
docs/performance.md). Credentials, profiles, regions and AWS_CA_BUNDLE are botocore's
in either case, so the chain an operator configured is the same.
"""

from __future__ import annotations

from typing import Any

__all__ = ["session"]


def session(profile: str | None, region: str | None) -> Any:
    """A fresh botocore session (sessions are not thread-safe; their clients are)."""
    import botocore.session

    made = botocore.session.Session(profile=profile)
    if region:
        made.set_config_variable("region", region)
    return made
