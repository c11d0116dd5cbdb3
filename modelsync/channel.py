"""Release channels: which version this host should serve, decided from the bucket alone.

A model with ``channel = "prod"`` follows ``<source>/_channels/prod.json``::

    {"stable": 12, "canary": {"version": 13, "percent": 20, "nonce": "9f86d081884c7d65"},
     "halt_after": 1, "on_halt": "revert", "seq": 3}

or, signed by ``modelsync release --sign-key`` (modelsync.channel_trust checks it), the
same pointer inside one envelope, so that a conditional write or GET is still one object::

    {"signed": {"stable": 12, ..., "model": "ranker", "channel": "prod",
                "seq": 1796000000123, "expires": 1796604800},
     "signatures": [{"keyid": "<sha256 of the raw public key>", "sig": "<base64>"}]}

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

import base64
import binascii
import hashlib
import json
import math
import os
import re
import socket
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from modelsync.errors import ChannelError
from modelsync.manifest import MAX_VERSION
from modelsync.oneline import one_line

__all__ = [
    "MAX_POINTER_BYTES",
    "Canary",
    "Envelope",
    "LiveHalt",
    "Pointer",
    "Target",
    "canonical_bytes",
    "channel_key",
    "cohort_score",
    "default_identity",
    "in_cohort",
    "parse_envelope",
    "target_of",
]

MAX_POINTER_BYTES = 16 * 1024
MAX_SIGNATURES = 8
_IDENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _Doc(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, allow_inf_nan=False, defer_build=True
    )


class Canary(_Doc):
    version: int = Field(ge=1, le=MAX_VERSION)
    percent: float = Field(ge=0, le=100)
    # Random, chosen by `release start`: failure markers count for the canary only
    # under this name (modelsync.reports), so markers of an earlier canary of the same
    # version, or planted before this one started, never halt it. "" in pointers
    # written by hand: the markers of any canary of the version count.
    nonce: str = Field(default="", pattern=r"^([0-9a-f]{16})?$")


class LiveHalt(_Doc):
    """The halt rules on the cohort's live checks (modelsync.sync.policy.halt); each is
    off unless set."""

    # Hosts reporting a failed smoke or bake verdict that halt the canary.
    checks: int | None = Field(default=None, ge=1, le=1_000_000)
    # The cohort's median error-ratio rise (new minus previous) that halts it.
    error_increase: float | None = Field(default=None, ge=0, le=1)
    # The cohort's median latency ratio (new / previous) that halts it.
    latency_ratio: float | None = Field(default=None, ge=1, le=1000)
    # Hosts with bake figures needed before a median counts.
    min_hosts: int = Field(default=1, ge=1, le=1_000_000)


class Pointer(_Doc):
    """A channel pointer: the stable version, and optionally a canary with its share."""

    stable: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    canary: Canary | None = None
    # Rolled-back (or refused) reports of the canary that stop it fleet-wide.
    halt_after: int = Field(default=1, ge=1, le=1_000_000)
    on_halt: Literal["revert", "hold"] = "revert"
    # Who changed it last, and when (seconds since the epoch): for `release status`.
    updated_by: str = Field(default="", max_length=200)
    updated_at: float = Field(default=0.0, ge=0, le=MAX_VERSION)
    # Raised by every `modelsync release` change; hosts that require signatures never
    # accept a signed pointer whose seq is below the newest they accepted (TUF's
    # rollback-attack check).
    seq: int = Field(default=0, ge=0, le=MAX_VERSION)
    # Seconds since the epoch after which hosts refuse it (TUF's freeze-attack check:
    # a replayed old-but-valid pointer stops working); signed pointers only.
    expires: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    # What the signature is for: a pointer signed for one model's channel is never
    # accepted as another's.
    model: str = Field(default="", max_length=128)
    channel: str = Field(default="", max_length=64)
    # The seq of the pointer that deliberately moved ``stable`` back (`release set
    # --stable N --rollback`): hosts accept an older stable only past such a mark.
    rollback_seq: int | None = Field(default=None, ge=0, le=MAX_VERSION)
    # Halt rules on the hosts' live checks (`release start --halt-on-...`). Left out of
    # the JSON when unset, so a pointer without them reads as before on every host.
    halt_live: LiveHalt | None = None

    @model_serializer(mode="wrap")
    def _without_unset_live(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        doc: dict[str, Any] = handler(self)
        if doc.get("halt_live", 0) is None:
            del doc["halt_live"]
        return doc

    @classmethod
    def parse(cls, raw: bytes, where: str) -> Pointer:
        """The pointer in ``raw`` (bare or in a signed envelope, whose signature is not
        checked here); ChannelError (one line, naming ``where``) otherwise."""
        return parse_envelope(raw, where).pointer

    @classmethod
    def from_doc(cls, doc: object, where: str) -> Pointer:
        """The pointer in the decoded JSON ``doc``; ChannelError otherwise."""
        if isinstance(doc, dict) and isinstance(doc.get("canary"), dict):
            # JSON has one number type: 20 and 20.0 are both a percentage.
            doc = {
                **doc,
                "canary": {**doc["canary"], "percent": _number(doc["canary"].get("percent"))},
            }
        if isinstance(doc, dict) and "updated_at" in doc:
            doc = {**doc, "updated_at": _number(doc["updated_at"])}
        try:
            pointer = cls.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            raise ChannelError(one_line(f"{where}: channel pointer: {loc}: {msg}")) from None
        if pointer.canary is not None and pointer.canary.version == pointer.stable:
            raise ChannelError(f"{where}: channel pointer: canary is the stable version")
        return pointer

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class Envelope:
    """A pointer as stored: bare (``payload`` None), or signed."""

    pointer: Pointer
    # The canonical bytes of the ``signed`` object: what the signatures are over.
    payload: bytes | None = None
    signatures: tuple[tuple[str, bytes], ...] = ()  # (keyid, raw signature)


def canonical_bytes(doc: Any) -> bytes:
    """One byte string per JSON value (sorted keys, no spaces, ASCII): what is signed,
    re-derived by the reader from the object it decoded, as TUF's canonical JSON."""
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def parse_envelope(raw: bytes, where: str) -> Envelope:
    """The pointer in ``raw`` with its signatures (not checked here: channel_trust)."""
    try:
        doc = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ChannelError(one_line(f"{where}: channel pointer is not JSON ({exc})")) from None
    if not (isinstance(doc, dict) and "signed" in doc):
        return Envelope(Pointer.from_doc(doc, where))
    if set(doc) != {"signed", "signatures"}:
        raise ChannelError(f"{where}: signed channel pointer: keys must be signed, signatures")
    listed = doc["signatures"]
    if not isinstance(listed, list) or len(listed) > MAX_SIGNATURES:
        raise ChannelError(
            f"{where}: signed channel pointer: signatures: a list of at most {MAX_SIGNATURES}"
        )
    signatures = []
    for entry in listed:
        keyid = entry.get("keyid") if isinstance(entry, dict) else None
        sig = entry.get("sig") if isinstance(entry, dict) else None
        if not (
            isinstance(entry, dict)
            and set(entry) == {"keyid", "sig"}
            and isinstance(keyid, str)
            and re.fullmatch(r"[0-9a-f]{64}", keyid)
            and isinstance(sig, str)
            and len(sig) <= 200
        ):
            raise ChannelError(
                f"{where}: signed channel pointer: each signature is "
                '{"keyid": 64 hex digits, "sig": base64}'
            )
        try:
            signatures.append((keyid, base64.b64decode(sig, validate=True)))
        except (ValueError, binascii.Error):
            raise ChannelError(f"{where}: signed channel pointer: sig is not base64") from None
    pointer = Pointer.from_doc(doc["signed"], where)
    return Envelope(pointer, canonical_bytes(doc["signed"]), tuple(signatures))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _number(value: object) -> object:
    """An integer as the float it stands for; anything else (or an integer no float
    holds) as it is, for validation to refuse."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            as_float = float(value)
        except OverflowError:
            return value
        return as_float if math.isfinite(as_float) else value
    return value


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
