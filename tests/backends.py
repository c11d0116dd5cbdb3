"""Storage backends for the shared contract suite: each knows how to put raw objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelsync.sources import Source, open_source


class Backend(Protocol):
    @property
    def url(self) -> str: ...

    def put(self, key: str, data: bytes) -> None:
        """Write a raw object at ``<url>/<key>`` behind modelsync's back."""
        ...

    def source(self) -> Source: ...


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

    def source(self) -> Source:
        self.root.mkdir(parents=True, exist_ok=True)
        return open_source(self.url)


@dataclass
class GcsBackend:
    endpoint: str
    bucket: str
    prefix: str = "models/ranker"

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"

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

    def source(self) -> Source:
        from modelsync.sources.gcs import GcsSettings, GcsSource

        return GcsSource(self.url, GcsSettings(endpoint=self.endpoint))
