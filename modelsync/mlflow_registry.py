"""The producer's side of the MLflow source: register a published revision as a
model version of MLflow's Model Registry, and move the alias to it.

The version's ``source`` is the revision's directory in the artifact store
(``<store>/<version>``), manifest included, so a host following the alias verifies
it like any revision (modelsync.backends.mlflow). Plain REST through modelsync's
own HTTP layer: the producer needs no mlflow package.
"""

from __future__ import annotations

import json

from modelsync.backends.mlflow import MAX_ANSWER_BYTES, parse_mlflow_url
from modelsync.cancel import CancelToken
from modelsync.errors import PublishError
from modelsync.manifest import parse_version

__all__ = ["register"]

_TIMEOUT_S = 30.0


def register(
    registry_url: str,
    revision_url: str,
    *,
    run_id: str | None = None,
    cancel: CancelToken | None = None,
) -> int:
    """Register ``revision_url`` under the registry URL's model (created if missing),
    point its alias (if the URL names one) at the new version; return that registry
    version. PublishError (one line) when the registry refuses."""
    try:
        api, model, alias = parse_mlflow_url(registry_url)
    except ValueError as exc:
        raise PublishError(str(exc)) from exc
    call = _Caller(api, registry_url, cancel)
    call("registered-models/create", {"name": model}, exists_ok=True)
    request: dict[str, str] = {
        "name": model,
        "source": revision_url,
        "description": f"modelsync revision {revision_url}",
    }
    if run_id is not None:
        request["run_id"] = run_id
    answer = call("model-versions/create", request)
    created = answer.get("model_version")
    number = created.get("version") if isinstance(created, dict) else None
    # The one version grammar: isdigit() also takes "\u00b2", on which int() raises.
    version = parse_version(number) if isinstance(number, str) else None
    if version is None:
        raise PublishError(f"{registry_url}: the registry's answer names no version")
    if alias is not None:
        call("registered-models/alias", {"name": model, "alias": alias, "version": str(version)})
    return version


class _Caller:
    def __init__(self, api: str, shown: str, cancel: CancelToken | None) -> None:
        self._api, self._shown, self._cancel = api, shown, cancel

    def __call__(
        self, path: str, doc: dict[str, str], *, exists_ok: bool = False
    ) -> dict[str, object]:
        from modelsync.transport import HttpClient, HttpFailure

        what = f"{self._shown}: {path}"
        try:
            answer = HttpClient.shared().request(
                "POST",
                f"{self._api}/api/2.0/mlflow/{path}",
                json.dumps(doc).encode(),
                _TIMEOUT_S,
                self._cancel,
                limit=MAX_ANSWER_BYTES,
            )
        except HttpFailure as exc:
            raise PublishError(f"{what}: {exc}") from exc
        try:
            body = json.loads(answer.body) if answer.body else {}
        except (ValueError, RecursionError):
            body = {}
        body = body if isinstance(body, dict) else {}
        if answer.status == 200:
            return body
        code = body.get("error_code")
        if exists_ok and code == "RESOURCE_ALREADY_EXISTS":
            return body
        message = str(body.get("message", ""))[:300].replace("\n", " ")
        raise PublishError(f"{what}: HTTP {answer.status} {code or ''} {message}".strip())
