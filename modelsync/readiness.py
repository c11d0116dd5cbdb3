"""Why the daemon is not ready (/readyz): each configured model that does not serve a
confirmed revision, in one line naming the model and the reason, from its state on disk.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelsync.config import ModelConfig
from modelsync.errors import StoreError
from modelsync.volume import Store

__all__ = ["not_ready"]


def not_ready(models: Iterable[ModelConfig], store: Store) -> list[str]:
    """One reason per model that keeps the daemon from being ready (none: ready)."""
    reasons = []
    for model in models:
        ms = store.model(model.name, model.layout)
        try:
            state = ms.load_state()
        except StoreError as exc:
            reasons.append(f"{model.name}: {exc}")
            continue
        if ms.active_version() is None:
            why = f" ({state.last_error})" if state.last_error else ""
            reasons.append(f"{model.name}: no active version{why}")
        elif state.rollback_failed:
            reasons.append(f"{model.name}: previous version failed to confirm after rollback")
        elif state.server_reason is not None:
            reasons.append(f"{model.name}: the server does not serve the active version")
        elif state.waiting is not None:
            reasons.append(
                f"{model.name}: version {state.waiting.version} waits: {state.waiting.reason}"
            )
    return reasons
