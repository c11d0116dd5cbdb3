"""The container client of an az:// source: azure-storage-blob over requests sessions
of the source's deadline layer, with the credentials the operator configured
(a connection string, else DefaultAzureCredential, whose token requests are bounded
by the same deadline)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from modelsync.backends._az_errors import translate
from modelsync.sources.environ import settle_environment

if TYPE_CHECKING:
    import requests

    from modelsync.backends.az import AzureOptions
    from modelsync.transport.deadline import Deadlines

__all__ = ["container_client"]


def container_client(
    options: AzureOptions, connections: Deadlines, account_url: str, container: str, url: str
) -> Any:
    """A ContainerClient for ``container`` of ``account_url`` (errors name ``url``)."""
    import requests
    from azure.storage.blob import BlobServiceClient

    from modelsync.backends.az import GET_SIZE
    from modelsync.transport.sessions import azure_transport, mount

    def on_deadline(pool_size: int, **extra: Any) -> tuple[requests.Session, Any]:
        """A requests session whose connects and reads the pass's deadline cuts
        (modelsync.transport), and azure-core's transport over it."""
        session = requests.Session()
        mount(connections, session, pool_size)
        transport = azure_transport(
            connections,
            session,
            session_owner=True,
            connection_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            **extra,
        )
        return session, transport

    # What the SDK sets on the transport it makes itself (4 MiB reads); a
    # transport passed in keeps azure-core's 4 KiB, far slower under the GIL.
    session, transport = on_deadline(
        options.max_pool_connections, connection_data_block_size=GET_SIZE
    )
    common: dict[str, Any] = {
        "transport": transport,
        "retry_total": 0,
        "max_single_get_size": GET_SIZE,
        "max_chunk_get_size": GET_SIZE,
    }
    secret = options.connection_string.get_secret_value() if options.connection_string else None
    secret = secret or os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    try:
        if secret:
            service = BlobServiceClient.from_connection_string(secret, **common)
        else:
            from azure.identity import DefaultAzureCredential

            # Token requests (managed identity, workload identity, a secret) on
            # pools of this source's deadline layer too: a token endpoint that
            # hangs ends the pass at its deadline, not after azure-core's 300 s
            # read timeout per try.
            credential = DefaultAzureCredential(transport=on_deadline(2)[1])
            service = BlobServiceClient(account_url, credential=credential, **common)
        settle_environment(session, service.url)
        return service.get_container_client(container)
    except Exception as exc:
        raise translate(exc, url, container) from exc
