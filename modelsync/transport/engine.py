"""The transfer engine: one urllib3 GET of object bytes, streamed into a writer.

The network backends (gs, s3, az) read payload bytes here rather than through their
SDKs' download helpers: the SDKs stay for listing, conditional writes and publish,
and give this engine their endpoint and credentials. Each GET

- runs on one PoolManager per source (connections reused across files and threads;
  a direct GET goes straight to its origin's pool, kept per scheme, host and port),
  or on the ProxyManager of the proxy the environment names for the URL's host
  (HTTPS_PROXY, NO_PROXY... as the SDKs read them: transport/proxies.py), all
  built from the deadline layer's classes, so the pass's token cuts a connect or a
  read in flight (Deadlines), and ``connect``/``read`` timeouts bound each wait;
- streams the body into ``write`` in READ_SIZE pieces (memory stays bounded by the
  reads in flight, whatever the object's size), and feeds ``hashers`` as bytes
  arrive, so a storage checksum is known the moment the last byte is written;
- fails in one line: HttpStatus for an answer that is not 200/206 (each backend says
  what the status means for its store), TransientSourceError for the network
  ("connection reset (127.0.0.1:9000)"), a short body included;
- takes only the answer it asked for: a ranged GET (``Range``, or Azure's
  ``x-ms-range``) must be answered 206 with the matching Content-Range, and a body
  must come as stored (no Content-Encoding but identity: the engine asks for
  identity and never decodes). Anything else (a cache or CDN that drops the range,
  a proxy that compresses, an object stored with a Content-Encoding) is an OddAnswer
  naming the host and what was wrong, retried once: one odd answer on the way says
  nothing about the revision, so it must never become a refusal (which is
  permanent), and the same answer twice is not waited out (errors.OddAnswer).

Small files are mostly request overhead: moving gs:// reads here from requests'
Session took a whole `sync` of 1,000 x 100 KB from 3.4-3.5 to 2.0 CPU seconds
(docs/transport.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3

from modelsync.cancel import CancelToken
from modelsync.errors import (
    Cancelled,
    ConfigError,
    ModelsyncError,
    OddAnswer,
    TransientSourceError,
)
from modelsync.sources.base import Hasher
from modelsync.sources.environ import requests_ca_variable
from modelsync.sources.ranges import READ_SIZE
from modelsync.transport.deadline import Deadlines
from modelsync.transport.errors import HttpStatus, network_line
from modelsync.transport.proxies import Proxy, Routes, refused, says_407

__all__ = ["CaBundle", "Engine", "Hashers", "is_transient", "requests_bundle"]

# Bytes of an error answer kept for its message (a store's XML or JSON error).
_ERROR_BODY = 4096
# The request headers that ask for a byte range: HTTP's, and Azure Blob's own.
_RANGE_HEADERS = ("range", "x-ms-range")
_BYTES = re.compile(r"bytes=(\d+)-(\d+)")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


# The storage checksums to feed, known once the answer's headers are (S3 says in its
# headers which checksum the object has), or fixed in advance.
Hashers = Sequence[Hasher] | Callable[[Mapping[str, str]], Sequence[Hasher]]


class Engine:
    """GETs for one source: its pools, its deadline watcher, its timeouts."""

    def __init__(
        self,
        pool_size: int,
        connect_timeout: float,
        read_timeout: float,
        ca_bundle: CaBundle | None = None,
    ) -> None:
        self.deadlines = Deadlines()
        # The CA bundle the store's SDK was told to trust (a private CA in front of
        # MinIO or a proxy that re-signs), so its listings and these GETs agree;
        # without one, the system's store (SSL_CERT_FILE and SSL_CERT_DIR apply).
        trust: dict[str, Any] = {}
        if ca_bundle is not None:
            trust = {"ca_cert_dir" if ca_bundle.path.is_dir() else "ca_certs": str(ca_bundle.path)}
        # block=False: a burst beyond pool_size opens extra connections rather than
        # waiting for one (they are not kept); retries=False: modelsync.retry decides.
        # Direct or through the proxy the environment names for the URL's host, as
        # the store's SDK goes (transport/proxies.py).
        self._routes = Routes(
            self.deadlines, num_pools=4, maxsize=pool_size, block=False, retries=False, **trust
        )
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)

    def get(
        self,
        url: str,
        headers: Mapping[str, str],
        write: Callable[[bytes], object],
        cancel: CancelToken | None,
        what: str,
        hashers: Hashers = (),
    ) -> Mapping[str, str]:
        """Stream the body of a GET into ``write``; return the answer's headers.

        Raises HttpStatus for a status other than 200/206, TransientSourceError for a
        network failure or a body shorter than its Content-Length, Cancelled when the
        token fires, and whatever ``write`` raises (a size bound, a full disk).
        """
        proxy, opener, target = self._routes.route(url)
        asked = _asked_range(headers)
        sent = dict(headers)
        # The bytes as stored, said out loud (http.client would send it anyway): an
        # answer in another encoding is then plainly not what was asked for.
        if not any(key.lower() == "accept-encoding" for key in sent):
            sent["Accept-Encoding"] = "identity"
        try:
            with self.deadlines.deadline(cancel):
                # The body streamed as it is: no decoding, no redirect, no retry here.
                options: dict[str, Any] = {
                    "headers": sent,
                    "preload_content": False,
                    "decode_content": False,
                    "redirect": False,
                    "timeout": self._timeout,
                }
                response = opener.urlopen("GET", target, assert_same_host=False, **options)
                try:
                    if response.status == 407 and proxy is not None:
                        raise refused(proxy, what)
                    if response.status not in (200, 206):
                        body = response.read(_ERROR_BODY, decode_content=False)
                        raise HttpStatus(response.status, what, bytes(body))
                    wrong = _not_asked(response.status, response.headers, asked)
                    if wrong is not None:
                        raise OddAnswer(f"{what}: {wrong} ({_host(url)}); not what was asked for")
                    feed = hashers(response.headers) if callable(hashers) else hashers
                    for chunk in response.stream(READ_SIZE, decode_content=False):
                        for hasher in feed:
                            hasher.update(chunk)
                        write(chunk)
                    answer: Mapping[str, str] = response.headers
                except BaseException:
                    # A connection with unread body is not reused for the next file.
                    response.close()
                    raise
                finally:
                    response.release_conn()
                return answer
        except Cancelled as exc:
            if proxy is None:
                raise
            raise _via(exc, proxy) from exc
        except (ModelsyncError, HttpStatus):
            raise
        except Exception as exc:
            if cancel is not None:
                try:
                    cancel.check()
                except Cancelled as fired:
                    raise (fired if proxy is None else _via(fired, proxy)) from exc
            if proxy is not None and says_407(exc):
                raise refused(proxy, what) from exc
            # A body cut short names no host in its chain: the URL's is the one.
            line = network_line(exc, _host(url))
            if line is None:
                raise
            if proxy is not None:
                line = f"{line} via proxy {proxy.url}"
            raise TransientSourceError(f"{what}: {line}") from exc

    def deadline(self, cancel: CancelToken | None) -> AbstractContextManager[None]:
        """Bound other calls on this engine's pools (a token refresh) by ``cancel``."""
        return self.deadlines.deadline(cancel)

    def close(self) -> None:
        self._routes.clear()


@dataclass(frozen=True)
class CaBundle:
    """A CA bundle (a PEM file, or a directory of hashed certificates) and where it
    was named, for the one line that says it is missing."""

    path: Path
    named_by: str

    @classmethod
    def named(cls, path: str | None, named_by: str) -> CaBundle | None:
        """The bundle at ``path`` (None: none named); ConfigError if it is not there."""
        if not path:
            return None
        bundle = cls(Path(path).expanduser(), named_by)
        if not bundle.path.exists():
            raise ConfigError(f"{named_by} names {path}, which does not exist (a CA bundle)")
        return bundle


def requests_bundle() -> CaBundle | None:
    """The bundle a requests-based SDK (google-cloud-storage, azure-core) is told to
    trust, in requests' order: REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE."""
    named = requests_ca_variable()
    return None if named is None else CaBundle.named(named[1], named[0])


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _asked_range(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """The (first, last) byte a GET asks for, None for the whole object."""
    for key, value in headers.items():
        if key.lower() in _RANGE_HEADERS:
            found = _BYTES.fullmatch(value.strip())
            if found is not None:
                return int(found[1]), int(found[2])
    return None


def _not_asked(status: int, answer: Mapping[str, str], asked: tuple[int, int] | None) -> str | None:
    """What makes a 200/206 answer other than the one asked for, or None.

    Checked before a byte is written: a body in another encoding, or other bytes
    than the range, would otherwise reach the file, fail its checks and be taken for
    the revision's fault."""
    encoding = (answer.get("Content-Encoding") or "").strip().lower()
    if encoding not in ("", "identity"):
        return f"answered with Content-Encoding {encoding[:40]!r} to a request for identity"
    if asked is None:
        if status == 206:
            return "answered 206 (a part) to a request for the whole object"
        return None
    first, last = asked
    if status == 200:
        # A server may ignore Range (RFC 9110): a whole object that is exactly the range
        # asked for (the range was the whole object) is still the bytes asked for.
        length = answer.get("Content-Length")
        if first == 0 and length is not None and length.strip() == str(last + 1):
            return None
        return f"answered 200 (the whole object) to a GET of bytes {first}-{last}"
    told = _CONTENT_RANGE.fullmatch((answer.get("Content-Range") or "").strip())
    if told is None or (int(told[1]), int(told[2])) != asked:
        said = (answer.get("Content-Range") or "none")[:60]
        return f"answered bytes {said!r} to a GET of bytes {first}-{last}"
    return None


def _via(exc: Cancelled, proxy: Proxy) -> Cancelled:
    # A pass ended at its deadline while a proxy held the request says so: an
    # operator reading the one line needs to know which hop was silent.
    return Cancelled(f"{exc}, waiting on proxy {proxy.url}")


def is_transient(status: int) -> bool:
    """Whether an HTTP status is worth retrying on any store (throttled, busy, down)."""
    return status in (408, 429) or status >= 500
