"""Signed channel pointers (modelsync.channel_trust): TUF's rollback and freeze checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelsync.channel import Canary, Pointer
from modelsync.channel_trust import sign_pointer, trusted_pointer
from modelsync.checkconfig import VerifyConfig
from modelsync.errors import ChannelError
from modelsync.signing import generate_keypair, load_private_key
from modelsync.state import ChannelMark, ModelState

NOW = 1_800_000_000.0
WHERE = "file:///b/m/_channels/prod.json"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Ed25519PrivateKey, VerifyConfig]:
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    verify = VerifyConfig(public_keys=(tmp_path / "k.pub",), require_signature=True)
    return load_private_key(tmp_path / "k.pem"), verify


def _signed(key: Ed25519PrivateKey, seq: int, stable: int | None = 5, **extra: object) -> bytes:
    fields: dict[str, object] = {
        "stable": stable,
        "seq": seq,
        "expires": int(NOW) + 3600,
        "model": "m",
        "channel": "prod",
        **extra,
    }
    return sign_pointer(Pointer.model_validate(fields), key)


def _admit(raw: bytes, verify: VerifyConfig, state: ModelState, now: float = NOW) -> Pointer:
    return trusted_pointer(
        raw, WHERE, model="m", channel="prod", verify=verify, state=state, now=now
    )


def _refused(raw: bytes, verify: VerifyConfig, state: ModelState, why: str) -> None:
    before = dict(state.channel_marks)
    with pytest.raises(ChannelError) as exc:
        _admit(raw, verify, state)
    message = str(exc.value)
    assert message.startswith(WHERE) and why in message and "\n" not in message, message
    assert state.channel_marks == before  # a refused pointer changes nothing


def test_a_signed_pointer_is_accepted_and_remembered(
    keys: tuple[Ed25519PrivateKey, VerifyConfig],
) -> None:
    """A pointer signed by a configured key is followed; its seq and stable are the mark."""
    key, verify = keys
    state = ModelState()
    pointer = _admit(_signed(key, 10), verify, state)
    assert (pointer.stable, pointer.seq) == (5, 10)
    assert state.channel_marks == {"prod": ChannelMark(seq=10, stable=5, stable_seq=10)}
    # The same pointer again (an unchanged bucket) is fine.
    assert _admit(_signed(key, 10), verify, state).seq == 10


def test_unsigned_and_forged_pointers_are_refused(
    keys: tuple[Ed25519PrivateKey, VerifyConfig], tmp_path: Path
) -> None:
    """Unsigned, tampered, signed by another key, or signed for another channel: refused."""
    key, verify = keys
    state = ModelState()
    _refused(Pointer(stable=1).to_bytes(), verify, state, "not signed")
    doc = json.loads(_signed(key, 10))
    doc["signed"]["stable"] = 1  # a bucket writer edits the signed content
    _refused(json.dumps(doc).encode(), verify, state, "signature does not verify")
    _refused(_signed(Ed25519PrivateKey.generate(), 10), verify, state, "does not verify")
    doc = json.loads(_signed(key, 10))
    doc["signatures"] = []
    _refused(json.dumps(doc).encode(), verify, state, "does not verify")
    _refused(_signed(key, 10, channel="canary"), verify, state, "signed for model 'm' channel")
    _refused(_signed(key, 10, model="other"), verify, state, "signed for model 'other'")
    _refused(_signed(key, 10, expires=None), verify, state, "has no expiry")


def test_a_replayed_older_pointer_is_refused(
    keys: tuple[Ed25519PrivateKey, VerifyConfig],
) -> None:
    """Rollback attack: a validly signed pointer with a seq below the mark is refused."""
    key, verify = keys
    state = ModelState()
    old = _signed(key, 10, stable=5)
    _admit(old, verify, state)
    _admit(_signed(key, 11, stable=6), verify, state)
    _refused(old, verify, state, "seq 10 is below 11")


def test_an_expired_pointer_is_refused(keys: tuple[Ed25519PrivateKey, VerifyConfig]) -> None:
    """Freeze attack: the newest pointer replayed past its expiry stops working."""
    key, verify = keys
    state = ModelState()
    raw = _signed(key, 10)
    _admit(raw, verify, state)
    with pytest.raises(ChannelError, match="expired at 2027-01-15T09:00:00Z"):
        _admit(raw, verify, state, now=NOW + 3600)


def test_stable_goes_back_only_by_a_signed_rollback(
    keys: tuple[Ed25519PrivateKey, VerifyConfig],
) -> None:
    """An older stable needs rollback_seq past the mark; a host that missed the rollback
    pointer accepts the next one; the rollback pointer replayed later is refused."""
    key, verify = keys
    state = ModelState()
    _admit(_signed(key, 10, stable=5), verify, state)
    _refused(_signed(key, 11, stable=3), verify, state, "stable 3 is older than 5")
    _refused(_signed(key, 11, stable=3, rollback_seq=9), verify, state, "not signed as a rollback")
    offline = ModelState(channel_marks=dict(state.channel_marks))
    rollback = _signed(key, 11, stable=3, rollback_seq=11)
    _admit(rollback, verify, state)
    assert state.channel_marks["prod"] == ChannelMark(seq=11, stable=3, stable_seq=11)
    # A canary started after the rollback: the offline host sees that first.
    later = _signed(key, 12, stable=3, rollback_seq=11, canary={"version": 4, "percent": 5.0})
    assert _admit(later, verify, offline).stable == 3
    _admit(_signed(key, 13, stable=6, rollback_seq=11), verify, state)
    _refused(rollback, verify, state, "seq 11 is below 13")
    _refused(_signed(key, 14, stable=3, rollback_seq=11), verify, state, "stable 3 is older")


def test_models_without_require_signature_keep_bare_pointers(
    keys: tuple[Ed25519PrivateKey, VerifyConfig],
) -> None:
    """No keys: anything parses; keys without require_signature: a bare pointer is fine,
    a signed one must still verify; no mark is kept."""
    key, verify = keys
    state = ModelState()
    bare = Pointer(stable=1, canary=Canary(version=2, percent=5)).to_bytes()
    assert _admit(bare, VerifyConfig(), state).stable == 1
    assert _admit(_signed(key, 1), VerifyConfig(), state).stable == 5
    optional = VerifyConfig(public_keys=verify.public_keys)
    assert _admit(bare, optional, state).stable == 1
    with pytest.raises(ChannelError, match="does not verify"):
        _admit(_signed(Ed25519PrivateKey.generate(), 1), optional, state)
    assert state.channel_marks == {}


def test_the_mark_survives_a_restart(
    keys: tuple[Ed25519PrivateKey, VerifyConfig], tmp_path: Path
) -> None:
    """The mark is saved with the model's state and read back; a bad one is refused."""
    key, verify = keys
    state = ModelState()
    _admit(_signed(key, 10), verify, state)
    state.save(tmp_path / "state.json")
    again = ModelState.load(tmp_path / "state.json")
    assert again.channel_marks == state.channel_marks
    _refused(_signed(key, 9), verify, again, "seq 9 is below 10")
    doc = json.loads((tmp_path / "state.json").read_bytes())
    doc["channel_marks"]["prod"]["seq"] = -1
    (tmp_path / "state.json").write_text(json.dumps(doc))
    with pytest.raises(Exception, match="channel_marks"):
        ModelState.load(tmp_path / "state.json")
