"""Wiring the storage SDKs' own connection pools into the deadline layer.

google-cloud-storage, azure-storage-blob and azure-identity speak through a
requests Session;
botocore keeps its own urllib3 managers (one direct, one more per proxy, made on
first use). Each hook here covers the managers a client has and those it makes
later, so no road (a proxy, a redirect to another host) reaches an untracked pool.
"""

from __future__ import annotations

import time
from typing import Any

from requests import Session
from requests.adapters import HTTPAdapter

from modelsync.transport.deadline import Deadlines

__all__ = ["azure_transport", "mount", "wire_botocore"]


class _DeadlineAdapter(HTTPAdapter):
    def __init__(self, deadlines: Deadlines, **kwargs: Any) -> None:
        self._deadlines = deadlines
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self._deadlines.wire(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        self._deadlines.wire(manager)
        return manager


def mount(deadlines: Deadlines, session: Session, pool_maxsize: int) -> None:
    """Route every http(s) request of ``session`` through tracked pools."""
    adapter = _DeadlineAdapter(deadlines, pool_connections=4, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def wire_botocore(deadlines: Deadlines, client: Any) -> None:
    """Track a botocore client's pools, keeping botocore's own pool classes."""
    session = client._endpoint.http_session
    # The proxy managers botocore makes later copy this mapping.
    session._pool_classes_by_scheme = {
        scheme: deadlines.pool_class(cls) for scheme, cls in session._pool_classes_by_scheme.items()
    }
    deadlines.wire(session._manager)
    for manager in session._proxy_managers.values():
        deadlines.wire(manager)


def azure_transport(deadlines: Deadlines, session: Session, **kwargs: Any) -> Any:
    """azure-core's requests transport on ``session`` (mount it first), whose waits
    between retries end when the calling thread's deadline fires: azure-identity
    retries a token request with backoff sleeps (0.8 s, 1.6 s, ...) that no socket
    cut reaches."""
    from azure.core.pipeline.transport import RequestsTransport

    class DeadlineTransport(RequestsTransport):  # type: ignore[misc]
        def sleep(self, duration: float) -> None:
            token = deadlines.token()
            if token is None:
                time.sleep(duration)
            else:
                token.wait(duration)  # Cancelled once the deadline passed

    return DeadlineTransport(session=session, **kwargs)
