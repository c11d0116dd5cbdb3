"""Wiring botocore's own connection pools into the deadline layer.

botocore keeps its own urllib3 managers (one direct, one more per proxy, made on
first use). The hook here covers the managers a client has and those it makes later,
so no road (a proxy, a redirect to another host) reaches an untracked pool. The
requests-based SDKs (google-cloud-storage, azure) are wired in sessions.py.
"""

from __future__ import annotations

from typing import Any

from modelsync.transport.deadline import Deadlines

__all__ = ["wire_botocore"]


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
