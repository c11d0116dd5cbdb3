"""The one transport layer: every socket modelsync opens, under the pass's deadline.

Deadlines      the registry of connections per thread and the watcher that cuts
               them when a CancelToken fires (deadline.py); pool classes derived
               from any urllib3 pool class, connects included
bounded        a call no socket cut reaches (botocore's credential refresh), waited
               for until the token fires (deadline.py)
Routes         direct or through the proxy HTTP(S)_PROXY/NO_PROXY name for a URL,
               as requests decides; one ProxyManager per proxy (proxies.py)
mount          a requests Session's pools (google-cloud-storage, azure) (sessions.py)
azure_transport azure-core's transport on such a session, its retry waits cut
               (sessions.py)
wire_botocore  botocore's own managers, proxies included (sdk.py)
HttpClient     the model servers' APIs: notify, confirm, presets; server_call
               says no answer as ServerNotRunning / LoadUnknown (client.py)
network_line   a network failure as "<cause> (<host:port>)" (errors.py)
Engine         the object bytes of gs/s3/az: urllib3 GETs streamed into the file,
               hashed as they arrive, its pools wired like HttpClient's (engine.py)
HttpStatus     a store's answer other than 200/206, for its backend to translate
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: urllib3 and requests cost ~60 ms at every start, and a
# file:// pass without a server API never needs them.
_WHERE = {
    "Deadlines": "deadline",
    "Routes": "proxies",
    "azure_transport": "sessions",
    "bounded": "deadline",
    "Engine": "engine",
    "HttpStatus": "errors",
    "HttpClient": "client",
    "HttpFailure": "client",
    "Response": "client",
    "server_call": "client",
    "cause": "errors",
    "endpoint": "errors",
    "network_error": "errors",
    "network_line": "errors",
    "mount": "sessions",
    "wire_botocore": "sdk",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
