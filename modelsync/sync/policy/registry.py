"""The registry policy: the version a model registry names (an MLflow alias, or the
registry's latest version), whichever way it moved.

Moving an alias is a release: the host follows it forward and back, like a channel's
stable version. An idle pass costs the one registry request of ``named_version``;
what the registry names is then read and checked from the artifact store like any
revision, and admitted like any revision before it is served.
"""

from __future__ import annotations

import functools
from typing import Protocol, runtime_checkable

from modelsync.cancel import CancelToken
from modelsync.errors import EmptySourceError
from modelsync.retry import call_with_retry
from modelsync.sources import Source
from modelsync.sync.context import PassContext
from modelsync.sync.policy import Choice
from modelsync.sync.policy.named import named_choice

__all__ = ["Named", "RegistryPolicy"]


@runtime_checkable
class Named(Protocol):
    """A source whose versions a registry names (modelsync.backends.mlflow)."""

    registry_version: int | None

    def named_version(self, cancel: CancelToken | None = None) -> int | None:
        """The revision the registry names now; None when it names none yet."""
        ...


class RegistryPolicy:
    def choose(self, ctx: PassContext, source: Source, active: int | None) -> Choice | None:
        assert isinstance(source, Named)
        version = call_with_retry(
            functools.partial(source.named_version, ctx.cancel),
            ctx.retry,
            ctx.cancel,
            f"{source.url}: resolve",
            ctx.log,
        )
        if version is None:
            if not ctx.model.allow_empty:
                raise EmptySourceError(
                    f"{source.url}: the registry names no ready version; register one, or "
                    "set allow_empty = true while the first is on its way"
                )
            return None
        if version == active:
            return None
        if version in ctx.state.refused:
            ctx.log.debug("the registry names a version refused here", version=version)
            return None
        ctx.log.info(
            "the registry names another version",
            version=version,
            registry_version=source.registry_version,
            active=active,
        )
        return named_choice(ctx, source, version, "the registry")
