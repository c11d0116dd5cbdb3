"""Where a blob's bytes are read from, and how that GET is authorised (backends/az.py).

The bytes go through the transfer engine; the SDK's container client says where and
with what credential, so there is one credential path per store:

- an account key (a connection string, Azurite): a read-only container SAS, made
  locally (no request) and renewed well before it expires;
- a SAS in the connection string: the container URL already carries it;
- a token credential (DefaultAzureCredential: workload identity, managed identity):
  a bearer token, renewed by the credential itself, with the API version it needs.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

__all__ = ["AzureMedia"]

# A container SAS lives this long and is renewed after half of it.
_SAS_LIFETIME = timedelta(hours=2)
# Bearer tokens are asked for again this many seconds before they expire.
_TOKEN_MARGIN = 300
_SCOPE = "https://storage.azure.com/.default"


class AzureMedia:
    """The URL and headers of a GET of one blob of the container."""

    def __init__(self, container: Any) -> None:
        self._container = container
        base, _, query = str(container.url).partition("?")
        self._base = base.rstrip("/")
        self._query = query
        self._lock = threading.Lock()
        self._renew_at = 0.0
        self._token: Any = None

    def request(self, key: str) -> tuple[str, dict[str, str]]:
        """URL and headers for a GET of ``key`` (names quoted as the SDK quotes them)."""
        url = f"{self._base}/{quote(key, safe='~/')}"
        credential = self._container.credential
        headers: dict[str, str] = {}
        if hasattr(credential, "account_key"):
            url += "?" + self._sas(credential)
        elif hasattr(credential, "get_token"):
            headers["Authorization"] = f"Bearer {self._bearer(credential)}"
            headers["x-ms-version"] = str(self._container.api_version)
        elif self._query:
            url += "?" + self._query
        return url, headers

    def _sas(self, credential: Any) -> str:
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        with self._lock:
            if time.monotonic() >= self._renew_at:
                now = datetime.now(UTC)
                self._query = generate_container_sas(
                    credential.account_name,
                    self._container.container_name,
                    account_key=credential.account_key,
                    permission=ContainerSasPermissions(read=True),
                    # A clock a few minutes behind the store's must not see it unborn.
                    start=now - timedelta(minutes=5),
                    expiry=now + _SAS_LIFETIME,
                )
                self._renew_at = time.monotonic() + _SAS_LIFETIME.total_seconds() / 2
            return self._query

    def _bearer(self, credential: Any) -> str:
        with self._lock:
            if self._token is None or self._token.expires_on - _TOKEN_MARGIN < time.time():
                self._token = credential.get_token(_SCOPE)
            return str(self._token.token)
