"""Read requests' environment settings once per session instead of at every request.

A requests Session with ``trust_env`` (the default) looks up proxies (HTTPS_PROXY,
NO_PROXY...) and the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) in os.environ for
every request it sends. That walk of the environment cost about as much CPU as
everything else modelsync does per object when fetching many small objects (profiled
with yappi: 200 x 1 MB from GCS). A backend's session talks to one endpoint, so the
answer is the same every time: it is resolved once, for that endpoint, and the
per-request lookup is switched off. Same settings; the environment is read when
the client is made (a daemon takes a new environment at restart anyway).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests

__all__ = ["requests_ca_variable", "settle_environment"]


def requests_ca_variable() -> tuple[str, str] | None:
    """(variable, path) of the CA bundle requests would verify with, in its order:
    REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE; None when neither is set."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(name):
            return name, os.environ[name]
    return None


def settle_environment(session: requests.Session, endpoint: str) -> None:
    """Give ``session`` the proxies and CA bundle the environment names for
    ``endpoint``, resolved now, and stop it reading the environment per request."""
    from requests.utils import get_environ_proxies

    session.proxies.update(get_environ_proxies(endpoint))
    # What requests' merge_environment_settings would pick, in its order.
    named = requests_ca_variable()
    if named is not None and session.verify is True:
        session.verify = named[1]
    session.trust_env = False
