"""Release channels: which version this host should serve, decided from the bucket alone.

A model with ``channel = "prod"`` follows ``<source>/_channels/prod.json``::

    {"stable": 12, "canary": {"version": 13, "percent": 20},
     "halt_after": 1, "on_halt": "revert"}

Every sidecar computes the same answer from the pointer, the canary's reports
(modelsync.reports) and its own identity; there is no controller:

- the cohort: a host serves the canary when ``cohort_score(model, canary, identity)``
  is below ``percent``. The score is a hash, so it is stable (a host in at 10 % is in
  at 50 %) and uniform (the cohort's share is the percentage within binomial noise);
  it depends on the canary version, so each canary picks a different cohort;
- the halt: once ``halt_after`` hosts reported the canary rolled back (or refused),
  no host adopts it, and with ``on_halt = "revert"`` the ones that did go back to
  stable (``"hold"`` leaves them where they are for a person to look at).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelsync.errors import ChannelError
from modelsync.manifest import MAX_VERSION

__all__ = [
    "MAX_POINTER_BYTES",
    "Canary",
    "Pointer",
    "Target",
    "channel_key",
    "cohort_score",
    "default_identity",
    "in_cohort",
    "target_of",
]

MAX_POINTER_BYTES = 16 * 1024
_IDENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Canary(_Doc):
    version: int = Field(ge=1, le=MAX_VERSION)
    percent: float = Field(ge=0, le=100)


class Pointer(_Doc):
    """A channel pointer: the stable version, and optionally a canary with its share."""

    stable: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    canary: Canary | None = None
    # Rolled-back (or refused) reports of the canary that stop it fleet-wide.
    halt_after: int = Field(default=1, ge=1, le=1_000_000)
    on_halt: Literal["revert", "hold"] = "revert"
    # Who changed it last, and when (seconds since the epoch): for `release status`.
    updated_by: str = Field(default="", max_length=200)
    updated_at: float = 0.0

    @classmethod
    def parse(cls, raw: bytes, where: str) -> Pointer:
        """The pointer in ``raw``; ChannelError (one line, naming ``where``) otherwise."""
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ChannelError(f"{where}: channel pointer is not JSON ({exc})") from None
        if isinstance(doc, dict) and isinstance(doc.get("canary"), dict):
            # JSON has one number type: 20 and 20.0 are both a percentage.
            percent = doc["canary"].get("percent")
            if isinstance(percent, int) and not isinstance(percent, bool):
                doc["canary"] = {**doc["canary"], "percent": float(percent)}
        if isinstance(doc, dict) and isinstance(doc.get("updated_at"), int):
            doc["updated_at"] = float(doc["updated_at"])
        try:
            pointer = cls.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            raise ChannelError(f"{where}: channel pointer: {loc}: {msg}") from None
        if pointer.canary is not None and pointer.canary.version == pointer.stable:
            raise ChannelError(f"{where}: channel pointer: canary is the stable version")
        return pointer

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n").encode()


def channel_key(channel: str) -> str:
    return f"_channels/{channel}.json"


def cohort_score(model: str, version: int, identity: str) -> float:
    """Where ``identity`` falls in [0, 100) for this model's canary ``version``."""
    digest = hashlib.sha256(f"{model}\n{version}\n{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def in_cohort(model: str, canary: Canary, identity: str) -> bool:
    return cohort_score(model, canary.version, identity) < canary.percent


@dataclass(frozen=True)
class Target:
    """What the channel asks of this host, and why."""

    version: int | None  # None: the channel names nothing for this host yet
    in_cohort: bool
    halted: bool
    reason: str


def target_of(
    pointer: Pointer, model: str, identity: str, active: int | None, halted: bool
) -> Target:
    """The version this host should serve, given whether the canary halted (a halt
    rule's verdict: modelsync.sync.policy.halt)."""
    canary = pointer.canary
    if canary is None:
        return Target(pointer.stable, False, False, "stable")
    cohort = in_cohort(model, canary, identity)
    if not halted:
        if cohort:
            return Target(canary.version, True, False, "in the canary cohort")
        return Target(pointer.stable, False, False, "not in the canary cohort")
    if pointer.on_halt == "hold" and active == canary.version:
        return Target(canary.version, cohort, True, "canary halted; holding (on_halt = hold)")
    return Target(pointer.stable, cohort, True, "canary halted")


def default_identity(configured: str | None = None) -> str:
    """``identity`` from the config, else MODELSYNC_IDENTITY, else the host (pod) name,
    reduced to the characters a report's object name may hold."""
    for value in (configured, os.environ.get("MODELSYNC_IDENTITY")):
        if value:
            if not _IDENTITY.match(value):
                raise ChannelError(
                    f"identity {value!r}: use letters, digits, '.', '_' and '-' (at most 128)"
                )
            return value
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-._")[:128]
    return host or "unnamed-host"
