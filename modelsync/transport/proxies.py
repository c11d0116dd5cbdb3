"""Direct or through a proxy, per request URL, as the storage SDKs decide it.

google-cloud-storage and azure-storage-blob (requests) and boto3 (botocore, which
copies requests' rules) send their calls through HTTPS_PROXY / HTTP_PROXY /
ALL_PROXY unless NO_PROXY names the host. The engine's byte reads go to the same
hosts, so they must take the same road: a fleet behind an egress proxy otherwise
lists through the proxy and then fails (or hangs) trying to read the bytes direct.

The rules are requests' (``get_environ_proxies`` + ``select_proxy``), read once
when a ``Routes`` is made (a daemon takes a new environment at restart; walking
os.environ per request cost as much CPU as a small object, sources/environ.py):

- the variables are read in either case, the lower-case form winning
  (``urllib.request.getproxies_environment``);
- NO_PROXY: ``*`` (alone) bypasses everything; an entry bypasses that host and
  its subdomains, with or without the port (``example.com`` and ``.example.com``
  both cover ``api.example.com``, not ``badexample.com``; ``host:8080``); a
  CIDR (``10.0.0.0/8``) or an address bypasses an IPv4 host in it (ports are
  not looked at for those, as in requests);
- the proxy for a URL is its scheme's, else ALL_PROXY's; one without a scheme is
  ``http://``;
- ``user:password@`` in the proxy URL becomes a Proxy-Authorization header; the
  URL kept and shown (in errors, in logs) has no password.

Each proxy gets one urllib3 ProxyManager (CONNECT tunnels for https, absolute-form
requests for http), its pools wired into the caller's deadline layer like the
direct PoolManager's, so the pass's token cuts a connect or a read through a proxy
too. Pools are reused per (proxy, host): one manager per proxy, one pool per host
inside it.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import urllib3

from modelsync.errors import ConfigError, SourceError
from modelsync.transport.deadline import Deadlines

__all__ = ["Proxy", "Routes", "choose", "environ_proxies", "refusal", "refused", "says_407"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Proxy:
    """A proxy to send a request through: its URL without credentials, and the
    Proxy-Authorization header its credentials make (none without)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, value: str) -> Proxy:
        """``[scheme://][user:password@]host[:port]`` as requests reads it."""
        if "://" not in value:
            value = f"http://{value}"
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            # urllib3's SOCKS support needs PySocks, which modelsync does not ship.
            raise ConfigError(
                f"proxy {parts.scheme}://{parts.hostname}: only http:// and https:// "
                "proxies are supported by the transfer engine"
            )
        if not parts.hostname:
            raise ConfigError(f"proxy {value.split('@')[-1]!r} names no host")
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        url = urlunsplit((parts.scheme, f"{host}:{port}", "", "", ""))
        headers: dict[str, str] = {}
        if parts.username is not None:
            basic = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers = urllib3.make_headers(proxy_basic_auth=basic)
        return cls(url, headers)


def environ_proxies() -> dict[str, str]:
    """The *_proxy variables by scheme (``no`` for NO_PROXY), lower-case winning."""
    proxies: dict[str, str] = urllib.request.getproxies_environment()
    # requests reads NO_PROXY apart: an empty no_proxy falls back to NO_PROXY.
    no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY")
    if no_proxy:
        proxies["no"] = no_proxy
    return proxies


def choose(url: str, proxies: Mapping[str, str]) -> str | None:
    """The proxy URL (as written in the environment) for ``url``; None: direct."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return None
    if _bypass(host, parts.port, proxies.get("no", "")):
        return None
    # requests' select_proxy, with the keys environment variables can make.
    for key in (f"{parts.scheme}://{host}", parts.scheme, f"all://{host}", "all"):
        if proxies.get(key):
            return proxies[key]
    return None


def _bypass(host: str, port: int | None, no_proxy: str) -> bool:
    entries = [entry.strip() for entry in no_proxy.replace(" ", "").split(",") if entry.strip()]
    if entries == ["*"]:
        return True
    address = _address(host)
    with_port = f"{host}:{port}" if port else host
    for entry in entries:
        if address is not None:
            # requests looks at IPv4 hosts by address only: a network or the address.
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        # A name, or a domain of it (leading dot optional), with or without the port.
        name = entry.lstrip(".")
        if name in (host, with_port) or host.endswith(f".{name}") or with_port.endswith(f".{name}"):
            return True
    # What requests asks next (urllib's proxy_bypass): the same list, matched as
    # whole domain labels, ports stripped; adds nothing the suffix test missed for
    # names, but covers an IP host written as a name entry.
    # (Undocumented in typeshed, public in urllib.request since Python 3.0.)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    return bool(bypass(host, {"no": no_proxy}))


def _address(host: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None


def refused(proxy: Proxy, what: str) -> SourceError:
    """A proxy's 407 as one line naming the proxy (never its password). Not worth
    retrying: the credentials will not change before the next pass."""
    given = "refused the credentials in its URL" if proxy.headers else "asks for credentials"
    return SourceError(f"{what}: proxy {proxy.url} {given} (HTTP 407)")


def refusal(exc: BaseException, what: str, url: str) -> SourceError | None:
    """``refused`` when a proxy's 407 is in ``exc``'s chain (an SDK's call to ``url``
    through the proxy the environment names for it); None otherwise."""
    if not says_407(exc):
        return None
    written = choose(url, environ_proxies())
    return refused(Proxy.parse(written), what) if written else None


def says_407(exc: BaseException) -> bool:
    """Whether a proxy's 407 (Proxy Authentication Required) is in ``exc``'s chain."""
    # Each client says it its own way: a status (azure-core, botocore's response
    # metadata), or only words (urllib3's refused CONNECT: "Tunnel connection
    # failed: 407 Proxy Authentication Required").
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        metadata = getattr(item, "response", None)
        if isinstance(metadata, dict):
            status = metadata.get("ResponseMetadata", {}).get("HTTPStatusCode")
        else:
            status = getattr(item, "status_code", None) or getattr(item, "status", None)
        if status == 407 or "407 Proxy Authentication Required" in str(item):
            return True
        for linked in (item.__cause__, item.__context__, getattr(item, "reason", None)):
            if isinstance(linked, BaseException):
                todo.append(linked)
        todo.extend(arg for arg in getattr(item, "args", ()) if isinstance(arg, BaseException))
    return False


class Routes:
    """Where each request URL goes: straight to its origin's pool, or through the proxy
    the environment names for it.

    The environment is read once, here; the answer per (scheme, host, port) is kept,
    and so is each direct origin's pool, so a GET parses its URL once (docs/transport.md,
    "The direct road").
    """

    def __init__(
        self, deadlines: Deadlines, proxies: Mapping[str, str] | None = None, **pool_kw: Any
    ) -> None:
        self._deadlines = deadlines
        self._proxies = dict(environ_proxies() if proxies is None else proxies)
        self._pool_kw = pool_kw
        self._lock = threading.Lock()
        self._direct = self._wired(urllib3.PoolManager(**pool_kw))
        self._by_proxy: dict[str, tuple[Proxy, urllib3.ProxyManager]] = {}
        self._by_origin: dict[tuple[str, str, int | None], tuple[Proxy | None, Any]] = {}
        self._pools: dict[tuple[str, str, int | None], Any] = {}

    def route(self, url: str) -> tuple[Proxy | None, Any, str]:
        """The proxy ``url`` goes through (None: direct), what to call ``urlopen`` on,
        and the target to give it.

        Direct: the origin's connection pool and the path with its query, as
        PoolManager.urlopen would hand them on after parsing the URL and normalising a
        pool key again. Through a proxy: the proxy's manager and the whole URL.
        """
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "", parts.port)
        found = self._by_origin.get(origin) or self._choose(url, origin)
        proxy, manager = found
        if proxy is not None:
            return proxy, manager, url
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        pool = self._pools.get(origin)
        if pool is None or pool.pool is None:  # new origin, or evicted and closed
            pool = manager.connection_from_host(parts.hostname, parts.port, parts.scheme)
            self._pools[origin] = pool
        return None, pool, target

    def _choose(self, url: str, origin: tuple[str, str, int | None]) -> tuple[Proxy | None, Any]:
        with self._lock:
            written = choose(url, self._proxies)
            if written is None:
                chosen: tuple[Proxy | None, Any] = (None, self._direct)
            else:
                if written not in self._by_proxy:
                    proxy = Proxy.parse(written)
                    manager = urllib3.ProxyManager(
                        proxy.url, proxy_headers=dict(proxy.headers), **self._pool_kw
                    )
                    self._by_proxy[written] = (proxy, self._wired(manager))
                chosen = self._by_proxy[written]
            self._by_origin[origin] = chosen
            return chosen

    def _wired(self, manager: Any) -> Any:
        self._deadlines.wire(manager)
        return manager

    def clear(self) -> None:
        with self._lock:
            self._pools.clear()
            self._direct.clear()
            for _, manager in self._by_proxy.values():
                manager.clear()
