"""The one transport layer: every socket modelsync opens, under the pass's deadline.

    Deadlines      the registry of connections per thread and the watcher that cuts
                   them when a CancelToken fires (deadline.py); pool classes derived
                   from any urllib3 pool class, connects included
    mount          a requests Session's pools (google-cloud-storage, azure) (sdk.py)
    wire_botocore  boto3/botocore's own managers, proxies included (sdk.py)
    HttpClient     the model servers' APIs: notify, confirm, presets; server_call
                   says no answer as ServerNotRunning / LoadUnknown (client.py)
    network_line   a network failure as "<cause> (<host:port>)" (errors.py)

A data plane fetching object bytes with urllib3 directly (ranged reads, connection
reuse) builds its PoolManager and calls ``Deadlines.wire`` on it, like HttpClient:
the deadline and the transport are the same layer.
"""

from modelsync.transport.client import HttpClient, HttpFailure, Response, server_call
from modelsync.transport.deadline import Deadlines
from modelsync.transport.errors import cause, endpoint, network_error, network_line
from modelsync.transport.sdk import mount, wire_botocore

__all__ = [
    "Deadlines",
    "HttpClient",
    "HttpFailure",
    "Response",
    "cause",
    "endpoint",
    "mount",
    "network_error",
    "network_line",
    "server_call",
    "wire_botocore",
]
