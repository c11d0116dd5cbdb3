"""The V2 inference protocol's calls that presets share (Triton, MLServer, KServe).

``POST /v2/repository/models/<m>/load`` is synchronous on all three: it answers
once the model is loaded, or with the error that stopped it, which is the server's
verdict (LoadFailed). Readiness is ``GET /v2/models/<m>[/versions/<v>]/ready``;
inference (smoke requests) ``POST /v2/models/<m>[/versions/<v>]/infer``.
"""

from __future__ import annotations

from urllib.parse import quote

from modelsync.cancel import CancelToken
from modelsync.confirm import ask
from modelsync.errors import LoadFailed
from modelsync.reload import Probe, ProbeState, ReloadTarget, server_words

__all__ = ["RepositoryLoad", "infer_url", "ready_probe"]


class RepositoryLoad:
    """Notifier: ask the server to (re)load the model from its repository."""

    def __init__(self, server: str, base_url: str, timeout: float) -> None:
        self._server = server
        self._base = base_url.rstrip("/")
        # The call returns when the load is over, so it may take as long as a confirm.
        self._timeout = timeout

    def notify(self, target: ReloadTarget, cancel: CancelToken) -> None:
        url = f"{self._base}/v2/repository/models/{quote(target.model, safe='')}/load"
        from modelsync.transport.client import server_call

        status, body = server_call("POST", url, None, self._timeout, cancel)
        if not 200 <= status < 300:
            raise LoadFailed(
                f"{self._server} could not load version {target.version} "
                f"(HTTP {status}): {server_words(body)}"
            )


def ready_probe(
    base_url: str, model: str, version: int | None, timeout: float, cancel: CancelToken
) -> Probe:
    """Readiness of ``model`` (of one ``version`` when given) as a Probe."""
    path = f"/v2/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{version}"
    answer = ask("GET", f"{base_url.rstrip('/')}{path}/ready", None, timeout, cancel)
    if isinstance(answer, Probe):
        return answer
    status, body = answer
    if 200 <= status < 300:
        return Probe(ProbeState.LOADED)
    if status == 404:
        return Probe(ProbeState.ABSENT, server_words(body) or "not found")
    return Probe(ProbeState.LOADING, f"HTTP {status}: {server_words(body)}")


def infer_url(base_url: str, model: str, version: int | None) -> str:
    """The V2 inference endpoint of ``model`` (of one ``version`` when given)."""
    path = f"/v2/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{version}"
    return f"{base_url.rstrip('/')}{path}/infer"
