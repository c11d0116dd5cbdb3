"""S3 event notifications read from an SQS queue by long polling.

Three deliveries reach the queue, all read here: S3 notifications sent straight to
the queue, the same through an SNS topic (raw or wrapped in SNS's envelope), and
EventBridge's "Object Created" events. For a fleet, each host needs its own queue
(an SQS message goes to one reader): with ``topic_arn`` the host creates its queue at
start, lets the topic send to it, subscribes it, and unsubscribes and deletes it at
stop. The queue is named after the host's identity, so a host that crashed takes its
queue back when it restarts instead of leaking a new one.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelsync.events.match import ObjectEvent, event_time
from modelsync.events.source import Delivery, EventSourceError
from modelsync.units import Duration

__all__ = ["SqsOptions", "SqsSource", "parse"]

# ReceiveMessage returns at most this many messages per call (SQS's own limit).
_BATCH = 10


class SqsOptions(BaseModel):
    """``[[events]] kind = "sqs"``: its ``options``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A queue that S3 (or EventBridge, or SNS) already sends to; this host reads it.
    queue_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    # Or an SNS topic S3 notifies: the host creates its own queue and subscribes it.
    topic_arn: str | None = Field(default=None, pattern=r"^arn:[a-z-]+:sns:[^\s]+$")
    # The per-host queue's name (with topic_arn); None: modelsync-<identity>.
    queue_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,80}$")
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{2,32}$")
    # An SQS/SNS-compatible endpoint (LocalStack, moto); None: AWS, by region.
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    profile: str | None = None
    # Long-poll wait: an idle host sends one ReceiveMessage per ``wait``.
    wait: Duration = Field(default=20.0, ge=1.0, le=20.0)

    @model_validator(mode="after")
    def _one_queue(self) -> SqsOptions:
        if (self.queue_url is None) == (self.topic_arn is None):
            raise ValueError("give exactly one of queue_url and topic_arn")
        if self.queue_name is not None and self.topic_arn is None:
            raise ValueError("queue_name is the per-host queue's name: it needs topic_arn")
        return self


def _s3_record(record: Any) -> ObjectEvent:
    if not isinstance(record, dict) or not str(record.get("eventName", "")).startswith(
        "ObjectCreated:"
    ):
        raise ValueError("a record that is not an S3 ObjectCreated notification")
    s3: Any = record.get("s3")
    try:
        bucket, obj = s3["bucket"]["name"], s3["object"]
        key = unquote_plus(obj["key"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"an S3 record without {exc}") from None
    if not isinstance(bucket, str):
        raise ValueError("an S3 record whose bucket name is not a string")
    identity = f"{obj.get('eTag', '')}/{obj.get('sequencer', '')}/{obj.get('versionId', '')}"
    return ObjectEvent(bucket, key, event_time(record.get("eventTime")), identity)


def parse(body: bytes) -> list[ObjectEvent]:
    """The objects a message announces; raises ValueError when it is none of the
    three deliveries (an S3 test event announces nothing)."""
    try:
        doc = json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and "Message" in doc:
        try:  # SNS's envelope around the S3 notification
            doc = json.loads(doc["Message"])
        except RecursionError:
            raise ValueError("an SNS notification whose Message is nested too deeply") from None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"an SNS notification whose Message is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return []  # S3 sends it when notifications are configured
    if doc.get("source") == "aws.s3" and isinstance(doc.get("detail"), dict):
        if doc.get("detail-type") != "Object Created":
            return []
        detail = doc["detail"]
        try:
            bucket, obj = detail["bucket"]["name"], detail["object"]
            key = obj["key"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"an EventBridge event without {exc}") from None
        if not isinstance(bucket, str) or not isinstance(key, str):
            raise ValueError("an EventBridge event whose bucket or key is not a string")
        identity = f"{obj.get('etag', '')}/{obj.get('sequencer', '')}"
        return [ObjectEvent(bucket, key, event_time(doc.get("time")), identity)]
    records = doc.get("Records")
    if not isinstance(records, list) or not records:
        raise ValueError("no Records")
    return [_s3_record(r) for r in records]


def _queue_name(identity: str) -> str:
    return "modelsync-" + re.sub(r"[^A-Za-z0-9_-]", "-", identity)[:70]


class SqsSource:
    """An SQS queue, configured or created for this host (``options.topic_arn``)."""

    def __init__(self, options: SqsOptions, identity: str) -> None:
        import botocore.config

        from modelsync.backends._aws import session as aws_session

        self._options = options
        self._session = aws_session(options.profile, options.region)
        # A profile that does not exist is a config error now, not a failing source;
        # reading the profile is no network call.
        self._session.get_scoped_config()
        # The read timeout must outlast the long poll.
        self._config = botocore.config.Config(
            connect_timeout=5,
            read_timeout=options.wait + 10,
            retries={"max_attempts": 1},
        )
        # Made by start, on the runner's thread: making a client loads its first
        # credentials, a request to an instance or container endpoint that held the
        # daemon's main loop (start-up, a reload) for as long as the endpoint dripped.
        self._sqs: Any = None
        self._sns: Any = None
        self._queue_url = options.queue_url
        self._queue_name = options.queue_name or _queue_name(identity)
        self._subscription: str | None = None

    @property
    def queue_url(self) -> str | None:
        return self._queue_url

    def start(self) -> None:
        if self._sqs is None:
            self._sqs, self._sns = self._clients()
        if self._sns is None or self._subscription is not None:
            return
        topic = self._options.topic_arn
        try:
            url = self._sqs.create_queue(QueueName=self._queue_name)["QueueUrl"]
            arn = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": arn,
                        "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
                    }
                ],
            }
            self._sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
            self._queue_url = url
            self._subscription = self._sns.subscribe(
                TopicArn=topic,
                Protocol="sqs",
                Endpoint=arn,
                Attributes={"RawMessageDelivery": "true"},
                ReturnSubscriptionArn=True,
            )["SubscriptionArn"]
        except Exception as exc:  # botocore's errors, and its connection errors
            raise EventSourceError(
                f"cannot create queue {self._queue_name} and subscribe it to {topic}: {exc}"
            ) from exc

    def _clients(self) -> tuple[Any, Any]:
        endpoint = self._options.endpoint_url
        try:
            sqs = self._session.create_client("sqs", endpoint_url=endpoint, config=self._config)
            sns = (
                self._session.create_client("sns", endpoint_url=endpoint, config=self._config)
                if self._options.topic_arn
                else None
            )
        except Exception as exc:  # botocore's credential and config errors
            raise EventSourceError(f"cannot make the SQS client: {exc}") from exc
        return sqs, sns

    def receive(self) -> list[Delivery]:
        try:
            answer = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=_BATCH,
                WaitTimeSeconds=int(self._options.wait),
            )
        except Exception as exc:
            raise EventSourceError(f"cannot read queue {self._queue_url}: {exc}") from exc
        return [
            Delivery(str(m.get("Body", "")).encode(), str(m["ReceiptHandle"]))
            for m in answer.get("Messages", [])
        ]

    def ack(self, deliveries: list[Delivery]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": d.receipt} for i, d in enumerate(deliveries)]
        try:
            for start in range(0, len(entries), _BATCH):
                self._sqs.delete_message_batch(
                    QueueUrl=self._queue_url, Entries=entries[start : start + _BATCH]
                )
        except Exception as exc:
            raise EventSourceError(f"cannot delete messages from {self._queue_url}: {exc}") from exc

    def stop(self) -> None:
        if self._sns is None:
            return
        try:
            if self._subscription is not None:
                self._sns.unsubscribe(SubscriptionArn=self._subscription)
            if self._queue_url is not None:
                self._sqs.delete_queue(QueueUrl=self._queue_url)
        except Exception:  # noqa: S110 - the host is stopping; docs/push.md says how to sweep
            pass
        self._subscription = None
