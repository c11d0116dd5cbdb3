"""An operator's hand on a model: `modelsync rollback` to a retained revision, which
pins the model there until `modelsync unpin`.

A retained copy goes through the same door as a download (admit.py): one that no
longer equals its manifest is moved aside and the rollback refused, with the served
revision untouched. The server must confirm the older revision, or the one it served
is restored.
"""

from __future__ import annotations

from modelsync.errors import RefusedError, ReloadError, StoreError
from modelsync.foreign import move_aside
from modelsync.outcome import Outcome
from modelsync.sync import activation
from modelsync.sync.admit import admit
from modelsync.sync.context import PassContext

__all__ = ["roll_back"]


def roll_back(ctx: PassContext, version: int | None) -> None:
    """Activate retained ``version`` (None: the newest one older than the active one)
    and pin the model to it; raise (one line) when it cannot be done, with the store
    as it was. The pass's envelope has prepared the store and holds its lock."""
    ms, model, state = ctx.ms, ctx.model, ctx.state
    active = ms.active_version()
    if active is None:
        raise StoreError(f"model {model.name} has no active version")
    retained = [v for v in ms.cached_versions() if v != active]
    if version is None:
        older = [v for v in retained if v < active]
        if not older:
            raise StoreError(
                f"model {model.name}: no retained revision older than {active}; "
                f"retained: {retained}"
            )
        version = max(older)
    path = ms.path_of(version)
    if path is None or version == active:
        raise StoreError(
            f"model {model.name}: version {version} is not a retained revision; "
            f"retained: {retained}"
        )
    ctx.result.candidate = version
    try:
        admitted = admit(ctx, version, path, "manual rollback")
    except RefusedError as exc:
        moved = move_aside(path, ms.foreign_dir)
        raise StoreError(f"{exc}; nothing changed (the copy was moved to {moved})") from None
    ctx.result.outcome = activation.activate(ctx, admitted, retire_to="cache")
    if ctx.result.outcome is not Outcome.ACTIVATED:
        raise ReloadError(
            f"the server did not confirm version {version}; version {active} was restored"
        )
    state.pinned = version
    ms.save_state(state)
    ctx.log.warning(
        "rolled back by hand; pinned until `modelsync unpin`", version=version, previous=active
    )
