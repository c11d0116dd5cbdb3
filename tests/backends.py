"""Storage backends for the shared contract suite: each knows how to put raw objects
behind modelsync's back, the source_options that point modelsync at it (or at a
fault proxy in front of it), and how its requests name an object."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from modelsync.manifest import MANIFEST_NAME
from modelsync.sources import Source, open_source
from tests.helpers import manifest_doc


def shard_files(count: int, size: int, seed: int) -> dict[str, bytes]:
    """``count`` random files of ``size`` bytes, named like a SavedModel's shards."""
    rng = random.Random(seed)
    return {f"variables/shard-{i:03d}": rng.randbytes(size) for i in range(count)}


def put_objects(
    backend: Backend, version: int, files: dict[str, bytes], *, complete: bool = True
) -> None:
    """A revision of model 'ranker' written as raw objects, the manifest last (none
    when not ``complete``), as a producer other than `modelsync publish` would."""
    for name, data in files.items():
        backend.put(f"{version}/{name}", data)
    if complete:
        doc = manifest_doc(files, "ranker", version)
        backend.put(f"{version}/{MANIFEST_NAME}", json.dumps(doc).encode())


class Backend(Protocol):
    @property
    def url(self) -> str: ...

    def put(self, key: str, data: bytes) -> None:
        """Write a raw object at ``<url>/<key>`` behind modelsync's back."""
        ...

    def options(self, endpoint: str | None = None) -> dict[str, Any]:
        """[models.source_options] reaching the store, or ``endpoint`` in front of it."""
        ...

    def source(self, endpoint: str | None = None) -> Source: ...


class NetworkBackend(Backend, Protocol):
    @property
    def name(self) -> str: ...

    @property
    def port(self) -> int:
        """The API server's port (a FaultProxy forwards there)."""
        ...

    def in_path(self, key: str) -> str:
        """What a request path contains when it reads the object ``<url>/<key>``."""
        ...

    @property
    def listing_mark(self) -> str:
        """What a request path contains when it lists with a delimiter."""
        ...

    @property
    def missing_url(self) -> str:
        """A source URL whose bucket (container) does not exist."""
        ...

    def env(self) -> dict[str, str]:
        """Environment for a `modelsync` child process reaching the store."""
        ...


@dataclass
class LocalBackend:
    root: Path

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def options(self, endpoint: str | None = None) -> dict[str, Any]:
        return {}

    def source(self, endpoint: str | None = None) -> Source:
        self.root.mkdir(parents=True, exist_ok=True)
        return open_source(self.url)


@dataclass
class GcsBackend:
    endpoint: str
    bucket: str
    prefix: str = "models/ranker"
    name: str = "gs"

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"

    @property
    def port(self) -> int:
        return int(urlsplit(self.endpoint).port or 0)

    def put(self, key: str, data: bytes) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.endpoint},
        )
        client.bucket(self.bucket).blob(f"{self.prefix}/{key}").upload_from_string(data)
        client.close()

    def options(self, endpoint: str | None = None) -> dict[str, Any]:
        return {"endpoint": endpoint or self.endpoint}

    def source(self, endpoint: str | None = None) -> Source:
        return open_source(self.url, self.options(endpoint))

    def in_path(self, key: str) -> str:
        return quote(f"{self.prefix}/{key}", safe="")

    @property
    def listing_mark(self) -> str:
        return "delimiter=%2F"

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    @property
    def missing_url(self) -> str:
        return f"gs://no-such-bucket-x/{self.prefix}"


def no_aws_credentials(tmp_path: Path) -> dict[str, str]:
    """Environment with no AWS credentials anywhere (keys, files, IMDS) but what a test
    adds beside it."""
    return {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


# moto accepts any credentials; boto3 needs some to sign with.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Backend:
    endpoint: str
    bucket: str
    prefix: str = "models/ranker"
    name: str = "s3"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def port(self) -> int:
        return int(urlsplit(self.endpoint).port or 0)

    def _client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def create(self) -> S3Backend:
        self._client().create_bucket(Bucket=self.bucket)
        return self

    def put(self, key: str, data: bytes) -> None:
        self._client().put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", Body=data)

    def options(self, endpoint: str | None = None) -> dict[str, Any]:
        return {"endpoint_url": endpoint or self.endpoint, "addressing_style": "path"}

    def source(self, endpoint: str | None = None) -> Source:
        return open_source(self.url, self.options(endpoint))

    def in_path(self, key: str) -> str:
        return f"/{self.bucket}/{self.prefix}/{key}"

    @property
    def listing_mark(self) -> str:
        return "delimiter=%2F"

    def env(self) -> dict[str, str]:
        return {**S3_ENV, "AWS_ENDPOINT_URL_S3": self.endpoint}

    @property
    def missing_url(self) -> str:
        return f"s3://no-such-bucket-x/{self.prefix}"


@dataclass
class AzureBackend:
    endpoint: str
    container: str
    prefix: str = "models/ranker"
    name: str = "az"

    @property
    def url(self) -> str:
        from tests.emulators import AZURITE_ACCOUNT

        return f"az://{AZURITE_ACCOUNT}/{self.container}/{self.prefix}"

    @property
    def port(self) -> int:
        return int(urlsplit(self.endpoint).port or 0)

    def _service(self, endpoint: str | None = None) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self._secret(endpoint))

    def _secret(self, endpoint: str | None = None) -> str:
        from tests.emulators import azurite_connection_string

        return azurite_connection_string(endpoint or self.endpoint)

    def create(self) -> AzureBackend:
        self._service().create_container(self.container)
        return self

    def put(self, key: str, data: bytes) -> None:
        container = self._service().get_container_client(self.container)
        container.upload_blob(f"{self.prefix}/{key}", data, overwrite=True)

    def options(self, endpoint: str | None = None) -> dict[str, Any]:
        return {"connection_string": self._secret(endpoint)}

    def source(self, endpoint: str | None = None) -> Source:
        return open_source(self.url, self.options(endpoint))

    def in_path(self, key: str) -> str:
        return f"/{self.container}/{self.prefix}/{key}"

    @property
    def listing_mark(self) -> str:
        return "delimiter=%2F"

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self._secret()}

    @property
    def missing_url(self) -> str:
        return self.url.replace(self.container, "no-such-container-x", 1)
