"""Reading Google Cloud Storage through its JSON API on the transfer engine.

Every read of a sync or run pass (listings, an object's metadata, control objects,
media) is a plain GET on the engine (transport/engine.py), signed with google-auth's
credentials, so a pass never imports google-cloud-storage: that import alone cost
~215 ms and ~25 MB of a daemon's RSS (docs/transport.md). The SDK stays for writes
(backends/gs.py: publish, conditional control writes, reports).

Credentials and endpoint follow what ``storage.Client`` chose for the same settings:
anonymous when ``endpoint`` or STORAGE_EMULATOR_HOST names an emulator, else
Application Default Credentials; the endpoint is ``endpoint``, else the emulator
host, else API_ENDPOINT_OVERRIDE, else Google's. Tokens are refreshed under a
lock, one refresh at a time, through the engine's pools and under the pass's
deadline (a hung token endpoint ends the pass at its deadline; it used to wait
out google-auth's 120 s per try).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from modelsync.backends._gs_errors import translate
from modelsync.cancel import CancelToken
from modelsync.errors import ModelsyncError, SourceError
from modelsync.sources.base import Hasher
from modelsync.sources.ranges import BoundedBuffer

if TYPE_CHECKING:
    from modelsync.transport.engine import Engine

__all__ = ["GcsReader", "items", "parse_time"]

_DEFAULT_ENDPOINT = "https://storage.googleapis.com"
# The scopes storage.Client asks Application Default Credentials for.
_SCOPES = (
    "https://www.googleapis.com/auth/devstorage.full_control",
    "https://www.googleapis.com/auth/devstorage.read_only",
    "https://www.googleapis.com/auth/devstorage.read_write",
)
# A page of at most 1,000 entries with names of at most 1,024 bytes and the few
# fields asked for stays well under this; a larger answer is not GCS's, it is refused.
PAGE_LIMIT = 8 << 20
# An object's metadata resource with the fields asked for.
META_LIMIT = 1 << 20


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp as GCS writes it (nanoseconds allowed, 'Z' for UTC)."""
    head, dot, rest = value.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        value = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    return datetime.fromisoformat(value)


class GcsReader:
    """GETs of one bucket's JSON API: credentials, endpoint and engine of one source."""

    def __init__(
        self,
        bucket: str,
        endpoint: str | None,
        pool_size: int,
        timeouts: tuple[float, float],
    ) -> None:
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        # storage.Client's order: its api_endpoint, the emulator, API_ENDPOINT_OVERRIDE
        # (a private endpoint, credentials still sent), Google's. The SDK writes there
        # (publish, control objects), so the reads must go there too.
        override = os.environ.get("API_ENDPOINT_OVERRIDE")
        self.bucket = bucket
        self.anonymous = bool(endpoint or emulator)
        self.endpoint = (endpoint or emulator or override or _DEFAULT_ENDPOINT).rstrip("/")
        self._pool_size = pool_size
        self._timeouts = timeouts
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._auth_lock = threading.Lock()
        self._credentials: Any = None
        self._auth_request: Any = None

    @property
    def engine(self) -> Engine:
        from modelsync.transport.engine import Engine, requests_bundle

        with self._lock:
            if self._engine is None:
                # google-cloud-storage (publish, control writes) verifies with requests.
                self._engine = Engine(self._pool_size, *self._timeouts, requests_bundle())
            return self._engine

    def object_url(
        self, key: str, params: Mapping[str, str] | None = None, *, media: bool = False
    ) -> str:
        """The URL of an object's resource, or of its bytes (``media``)."""
        base = f"{self.endpoint}/download" if media else self.endpoint
        url = f"{base}/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(key, safe='')}"
        query = {"alt": "media", **(params or {})} if media else dict(params or {})
        return f"{url}?{_query(query)}" if query else url

    def headers(self, url: str, cancel: CancelToken | None = None) -> dict[str, str]:
        """Headers for one GET, the credentials applied (refreshed when expired).

        Call it under the engine's deadline (``get``): the lookup and refresh are
        requests on its pools. Another thread's refresh is waited for only until
        ``cancel`` fires."""
        headers = {"Accept-Encoding": "identity"}
        _acquire(self._auth_lock, cancel)
        try:
            self._discover()
            self._credentials.before_request(self._auth_request, "GET", url, headers)
        except ModelsyncError:
            raise
        except Exception as exc:
            raise translate(exc, url.split("?")[0], self.bucket) from exc
        finally:
            self._auth_lock.release()
        return headers

    def credentials(self, cancel: CancelToken | None = None) -> Any:
        """The credentials ``headers`` applies, looked up the same way (the SDK's
        writes sign with these, so it never looks them up on a session of its own)."""
        with self.engine.deadline(cancel):
            _acquire(self._auth_lock, cancel)
            try:
                self._discover()
            finally:
                self._auth_lock.release()
        return self._credentials

    def _discover(self) -> None:
        # Anonymous credentials never refresh, so they get no transport: its import
        # (requests, google.oauth2's service accounts, cryptography) was ~100-140 ms
        # of every emulator-backed `sync`.
        if self._auth_request is None and not self.anonymous:
            self._auth_request = self._make_auth_request()
        if self._credentials is None:
            self._credentials = self._make_credentials()

    def _make_auth_request(self) -> Any:
        # requests' transport, as the SDK's: google-auth's urllib3 one needs the
        # `packaging` module, which google-cloud-storage does not pull in. Its pools
        # are the engine's deadline layer's, so a token endpoint (or a proxy in front
        # of it) that hangs is cut at the pass deadline like a read (``get``);
        # google-auth's own timeout is 120 s per try.
        import google.auth.transport.requests
        import requests

        from modelsync.transport.sessions import mount

        session = requests.Session()
        mount(self.engine.deadlines, session, 2)
        return google.auth.transport.requests.Request(session=session)

    def _make_credentials(self) -> Any:
        if self.anonymous:
            # Emulators take no credentials; real GCS never sees this branch.
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()  # type: ignore[no-untyped-call]
        import google.auth

        # The discovery's own requests (the GCE metadata server's ping, its project
        # id) on the deadline layer's pools too: without ``request`` google-auth makes
        # a session of its own, which a dripping metadata server held past any deadline.
        # Bounded as a whole, for the ping's sleeps between its tries.
        deadlines = self.engine.deadlines
        credentials, _ = deadlines.bounded(
            lambda: google.auth.default(scopes=_SCOPES, request=self._auth_request),
            deadlines.token(),
        )
        return credentials

    def get(
        self,
        url: str,
        what: str,
        write: Callable[[bytes], object],
        cancel: CancelToken | None,
        hashers: Sequence[Hasher] = (),
        extra: Mapping[str, str] | None = None,
    ) -> Mapping[str, str]:
        """One GET streamed into ``write``; errors translated to modelsync's (one line)."""
        from modelsync.transport.errors import HttpStatus

        # A token refresh (or the first lookup of credentials) runs under the pass's
        # deadline too: it is a request on this engine's pools.
        with self.engine.deadline(cancel):
            headers = self.headers(url, cancel)
        headers.update(extra or {})
        try:
            return self.engine.get(url, headers, write, cancel, what, hashers)
        except HttpStatus as exc:
            raise translate(exc, what, self.bucket) from exc

    def get_json(self, url: str, what: str, limit: int, cancel: CancelToken | None) -> Any:
        buffer = BoundedBuffer(limit, what)
        self.get(url, what, buffer.write, cancel)
        try:
            return json.loads(buffer.value())
        except ValueError as exc:
            raise SourceError(f"{what}: the storage API answered with no JSON") from exc

    def metadata(
        self,
        key: str,
        what: str,
        cancel: CancelToken | None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The object's resource (name, size, generation, crc32c, updated, and the
        Content-Encoding it is stored with)."""
        fields = {
            "fields": "name,size,generation,crc32c,updated,contentEncoding",
            **(params or {}),
        }
        url = self.object_url(key, fields)
        answer = self.get_json(url, what, META_LIMIT, cancel)
        if not isinstance(answer, dict):
            raise SourceError(f"{what}: the storage API answered with no object resource")
        return answer

    def list_pages(
        self, prefix: str, what: str, cancel: CancelToken | None, delimiter: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Each page of a listing, following nextPageToken to the end."""
        params = {
            "prefix": prefix,
            "fields": "nextPageToken,prefixes,items(name,size,generation,crc32c,updated)",
        }
        if delimiter is not None:
            params["delimiter"] = delimiter
        base = f"{self.endpoint}/storage/v1/b/{quote(self.bucket, safe='')}/o"
        seen: set[str] = set()
        token: str | None = None
        while True:
            query = {**params, "pageToken": token} if token else params
            page = self.get_json(f"{base}?{_query(query)}", what, PAGE_LIMIT, cancel)
            if not isinstance(page, dict):
                raise SourceError(f"{what}: the storage API answered with no listing")
            yield page
            token = page.get("nextPageToken") or None
            if token is None:
                return
            # A store that hands back a token it gave before would list forever.
            if not isinstance(token, str) or token in seen:
                raise SourceError(f"{what}: the listing repeats its page token")
            seen.add(token)

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None


def _query(params: Mapping[str, str]) -> str:
    # Every reserved character percent-encoded ('/' included, space as %20), as the
    # JSON API's query parameters require for object names.
    return urlencode(params, quote_via=quote, safe="")


def _acquire(lock: threading.Lock, cancel: CancelToken | None) -> None:
    """Take ``lock``, waiting for its holder only until ``cancel`` fires."""
    if cancel is None:
        lock.acquire()
        return
    while not lock.acquire(timeout=0.2):
        cancel.check()


def items(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The object resources of a listing page (none when the page has none)."""
    found = page.get("items") or []
    return [item for item in found if isinstance(item, dict) and isinstance(item.get("name"), str)]
