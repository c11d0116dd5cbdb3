"""Signed channel pointers: only the publisher's key moves a fleet, and never back by replay.

The checks follow TUF's client workflow for its timestamp role (The Update Framework
specification 1.0.31, "Update the timestamp role"), with the channel pointer as the one
piece of metadata:

- *arbitrary metadata* — the ``signed`` object must verify (Ed25519, over its canonical
  JSON) with one of ``verify.public_keys``; it names the model and the channel it is for;
- *rollback attack* — its ``seq`` must not be below the newest seq this host accepted,
  which is persisted in the model's state (TUF: "MUST be less than or equal to its
  version number in the new ... metadata file"; "persist");
- *freeze attack* — it must not be past ``expires`` (TUF: the expiration "MUST be
  higher than the fixed update start time"), so a writer replaying the newest
  old-but-valid pointer freezes a fleet for at most the expiry the publisher chose;
- and, beyond TUF, a stable version older than the newest stable accepted is taken only
  from a pointer signed as a deliberate rollback (``rollback_seq`` after the mark).

Models without ``require_signature`` keep accepting bare pointers (a signed one is
still checked against ``public_keys`` when there are any, as a manifest's signature is).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelsync.channel import Envelope, Pointer, canonical_bytes, parse_envelope
from modelsync.errors import ChannelError
from modelsync.state import ChannelMark, ModelState

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from modelsync.checkconfig import VerifyConfig

__all__ = ["key_id", "sign_pointer", "signed_by", "trusted_pointer"]


def key_id(key: Ed25519PublicKey) -> str:
    """sha256 of the raw 32-byte public key, in hex: which key made a signature."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_pointer(pointer: Pointer, key: Ed25519PrivateKey) -> bytes:
    """The pointer as a signed envelope, ready to store."""
    signed = pointer.model_dump()
    sig = key.sign(canonical_bytes(signed))
    doc = {
        "signed": signed,
        "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(sig).decode()}],
    }
    return (canonical_bytes(doc).decode() + "\n").encode()


def signed_by(envelope: Envelope, keys: Sequence[Ed25519PublicKey]) -> bool:
    """True when one of ``keys`` made one of the envelope's signatures over its payload."""
    from modelsync.signing import verify

    if envelope.payload is None:
        return False
    by_id = {key_id(k): k for k in keys}
    return any(
        keyid in by_id and verify([by_id[keyid]], envelope.payload, sig)
        for keyid, sig in envelope.signatures
    )


def trusted_pointer(
    raw: bytes,
    where: str,
    *,
    model: str,
    channel: str,
    verify: VerifyConfig,
    state: ModelState,
    now: float | None = None,
) -> Pointer:
    """The pointer in ``raw`` if this model may follow it, recording an accepted signed
    pointer in ``state.channel_marks`` (the caller saves the state); else ChannelError,
    one line naming ``where`` and why, and ``state`` untouched."""
    envelope = parse_envelope(raw, where)
    if not verify.public_keys:
        if verify.require_signature:
            # Signatures required by OMS keys alone: revisions are signed, but a pointer
            # is a modelsync document signed with Ed25519 release keys; following an
            # unverifiable one would let a bucket writer move the fleet back.
            raise ChannelError(
                f"{where}: refused: this model requires signatures and channel pointers are "
                "verified with verify.public_keys (Ed25519 release keys), none configured"
            )
        return envelope.pointer
    from modelsync.signing import load_public_key

    keys = [load_public_key(path) for path in verify.public_keys]
    if envelope.payload is None:
        if verify.require_signature:
            raise ChannelError(
                f"{where}: refused: the channel pointer is not signed and this model requires "
                "signatures (write it with `modelsync release ... --sign-key`)"
            )
        return envelope.pointer
    if not signed_by(envelope, keys):
        raise ChannelError(
            f"{where}: refused: the channel pointer's signature does not verify with any "
            "of verify.public_keys"
        )
    if not verify.require_signature:
        return envelope.pointer
    pointer = envelope.pointer
    if (pointer.model, pointer.channel) != (model, channel):
        raise ChannelError(
            f"{where}: refused: the pointer is signed for model {pointer.model!r} channel "
            f"{pointer.channel!r}, not {model!r} channel {channel!r}"
        )
    now = time.time() if now is None else now
    if pointer.expires is None:
        raise ChannelError(f"{where}: refused: the signed pointer has no expiry")
    if now >= pointer.expires:
        raise ChannelError(
            f"{where}: refused: the signed pointer expired at {_iso(pointer.expires)} "
            "(a frozen or replayed pointer; the publisher renews it with "
            "`modelsync release renew`)"
        )
    mark = state.channel_marks.get(channel)
    state.channel_marks[channel] = _advance(mark, pointer, where)
    return pointer


def _advance(mark: ChannelMark | None, pointer: Pointer, where: str) -> ChannelMark:
    """The mark after accepting ``pointer``; ChannelError when it goes back."""
    if mark is None:
        return ChannelMark(pointer.seq, pointer.stable, pointer.seq)
    if pointer.seq < mark.seq:
        raise ChannelError(
            f"{where}: refused: seq {pointer.seq} is below {mark.seq}, the newest accepted "
            "here (an older pointer replayed)"
        )
    stable, stable_seq = mark.stable, mark.stable_seq
    if pointer.stable is not None and (stable is None or pointer.stable > stable):
        stable, stable_seq = pointer.stable, pointer.seq
    elif pointer.stable is not None and pointer.stable < stable:  # type: ignore[operator]
        deliberate = pointer.rollback_seq is not None and pointer.rollback_seq > mark.stable_seq
        if not deliberate:
            raise ChannelError(
                f"{where}: refused: stable {pointer.stable} is older than {stable}, the newest "
                "stable accepted here, and the pointer is not signed as a rollback "
                "(`modelsync release set --stable N --rollback`)"
            )
        stable, stable_seq = pointer.stable, pointer.seq
    return ChannelMark(max(mark.seq, pointer.seq), stable, stable_seq)


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(min(seconds, 253402300799)))
