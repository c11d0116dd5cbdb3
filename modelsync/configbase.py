"""The base of every configuration model: unknown keys refused, values frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["NoOptions", "Strict"]


class Strict(BaseModel):
    # Every model here and in the method, preset and backend option modules builds its
    # validator at first use, not at import: a command pays only for what it validates.
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=False, populate_by_name=True, defer_build=True
    )


class NoOptions(Strict):
    """A backend or server preset without options of its own: any key in its
    source_options or server_options is an error."""
