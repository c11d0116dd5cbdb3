"""Wiring requests Sessions into the deadline layer: google-cloud-storage,
google-auth, azure-storage-blob and azure-identity speak through one.

Apart from botocore's wiring (sdk.py) so that an s3:// command never imports
requests (17 ms of its start).
"""

from __future__ import annotations

import time
from typing import Any

from requests import Session
from requests.adapters import HTTPAdapter

from modelsync.transport.deadline import Deadlines

__all__ = ["azure_transport", "mount"]


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
