"""Send a revision's smoke requests to the version the server has just loaded.

Run between the server's confirmation and the commit (modelsync.sync.activation).
Every request goes through the one HTTP client (modelsync.transport.client), bounded
by ``[models.smoke] timeout`` for all of them together and by the pass's token, to
the preset's inference endpoint for the new version (or the configured template).
The verdict says what happened; the caller rolls back on ``failed``.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from modelsync.reload import parse_json, redact_url, server_words
from modelsync.servers import get_preset
from modelsync.smoke import SMOKE_FILE, SmokeFile, difference, load_smoke
from modelsync.sync.context import PassContext
from modelsync.transport.client import HttpClient, HttpFailure
from modelsync.verdicts import SmokeVerdict

__all__ = ["run_smoke"]

# An inference answer is read up to this; a longer one is cut and fails to parse.
_ANSWER_LIMIT = 4 << 20


def run_smoke(ctx: PassContext, version: int) -> SmokeVerdict | None:
    """The smoke verdict of ``version`` (served now from <store>/<model>/<version>);
    None when it carries no smoke file and the model does not require one.
    Cancelled passes through (the journal keeps the activation for the next pass)."""
    config = ctx.model.smoke
    path = ctx.ms.dir / str(version)
    try:
        smoke = load_smoke(path)
    except ValueError as exc:
        return SmokeVerdict(verdict="failed", reason=f"unusable smoke file: {exc}")
    if smoke is None:
        if config.required:
            return SmokeVerdict(
                verdict="failed",
                reason=f"no {SMOKE_FILE} in the revision, and the model requires one",
            )
        return None
    url: str | None
    if config.url is not None:
        url = config.url.format(model=quote(ctx.model.name, safe=""), version=version)
    else:
        url = get_preset(ctx.model.server).infer_url(ctx.model, version, path)
    if url is None:
        ctx.log.warning(
            "revision carries smoke requests, but the server has no inference endpoint "
            "modelsync knows: set [models.smoke] url",
            version=version,
        )
        return SmokeVerdict(verdict="skipped", reason="no inference endpoint ([models.smoke] url)")
    started = time.monotonic()
    reason = _send(ctx, smoke, url, config.timeout)
    ctx.log.info(
        "smoke requests passed" if reason is None else "smoke requests failed",
        version=version,
        url=redact_url(url),
        requests=len(smoke.requests),
        seconds=round(time.monotonic() - started, 3),
        reason=reason,
    )
    if reason is not None:
        return SmokeVerdict(verdict="failed", requests=len(smoke.requests), reason=reason)
    return SmokeVerdict(verdict="passed", requests=len(smoke.requests))


def _send(ctx: PassContext, smoke: SmokeFile, url: str, timeout: float) -> str | None:
    """The first failure among the requests, as one line; None when all passed."""
    client = HttpClient.shared()
    deadline = time.monotonic() + timeout
    for i, request in enumerate(smoke.requests):
        label = f"request {i + 1}" + (f" ({request.name})" if request.name else "")
        left = deadline - time.monotonic()
        if left <= 0:
            return f"{label}: not sent, the smoke timeout of {timeout:g}s passed"
        body = json.dumps(request.body, separators=(",", ":")).encode()
        try:
            answer = client.request("POST", url, body, left, ctx.cancel, limit=_ANSWER_LIMIT)
        except HttpFailure as exc:
            return f"{label}: no answer from {redact_url(url)}: {exc}"
        if not 200 <= answer.status < 300:
            return f"{label}: HTTP {answer.status}: {server_words(answer.body)}"
        try:
            doc = parse_json(answer.body)
        except ValueError as exc:
            return f"{label}: the answer is not JSON ({exc})"
        if request.expect is None:
            continue  # any JSON answer will do: the request must only succeed
        found = difference(doc, request.expect, request.tolerance)
        if found is not None:
            return f"{label}: {found}"
    return None
