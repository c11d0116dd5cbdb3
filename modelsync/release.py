"""`modelsync release`: change a channel's pointer, and see how a rollout is going.

Every change reads the pointer, changes it, and writes it back only if nobody wrote
it in between (the store's conditional write on the tag read: a GCS generation, an
S3 or Azure ETag; create-only when there was none). Two operators therefore cannot
lose each other's change: the second gets a one-line error and runs the command
again. gcp-storage-emulator ignores preconditions (real GCS keeps them).

Each change raises the pointer's ``seq``. With a signing key (``--sign-key``) the
pointer is written as a signed envelope with an expiry (modelsync.channel_trust), and a
change is made only to a pointer that key (or one of the model's ``verify.public_keys``)
signed: the tool never signs what a bucket writer without the key put there. Such a
pointer can only be replaced (``set --stable N``, ``promote --version N``).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from modelsync.cancel import CancelToken
from modelsync.channel import (
    MAX_POINTER_BYTES,
    Canary,
    Envelope,
    LiveHalt,
    Pointer,
    channel_key,
    in_cohort,
    parse_envelope,
)
from modelsync.channel_trust import sign_pointer, signed_by
from modelsync.errors import ChannelError, PublishConflict
from modelsync.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, MAX_VERSION
from modelsync.oneline import one_line
from modelsync.release_status import RolloutStatus
from modelsync.reports import ReportBook, failure_markers
from modelsync.sources import Source
from modelsync.sources.control import Control
from modelsync.sync.policy.halt import Evidence, first_halt

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = ["DEFAULT_EXPIRY", "Release", "RolloutStatus"]

# How long a signed pointer stays valid: the longest a replayed one can freeze a fleet.
DEFAULT_EXPIRY = 7 * 86400.0

# The pointer as read (None when there is none or it cannot be trusted) and the seq the
# new pointer gets -> the new pointer.
Change = Callable[[Pointer | None, int], Pointer]


class Release:
    """One model's channel in one source."""

    def __init__(
        self,
        source: Source,
        model: str,
        channel: str,
        who: str,
        wall: Callable[[], float] = time.time,
        *,
        signer: Ed25519PrivateKey | None = None,
        trusted: Sequence[Ed25519PublicKey] = (),
        expires_in: float = DEFAULT_EXPIRY,
    ) -> None:
        self.source, self.model, self.channel, self.who = source, model, channel, who
        self._wall = wall
        self._signer = signer
        self._trusted = tuple(trusted)
        self._expires_in = expires_in
        self._cancel = CancelToken(deadline=time.monotonic() + 300)

    @property
    def where(self) -> str:
        return f"{self.source.url}/{channel_key(self.channel)}"

    def read(self) -> tuple[Pointer | None, str]:
        """The pointer and its tag ("" when there is none)."""
        envelope, tag = self.read_envelope()
        return (envelope.pointer if envelope else None), tag

    def read_envelope(self) -> tuple[Envelope | None, str]:
        got = self.source.get_control(
            channel_key(self.channel), MAX_POINTER_BYTES, None, self._cancel
        )
        if not isinstance(got, Control):
            return None, ""
        return parse_envelope(got.data, self.where), got.tag

    def _base(self, envelope: Envelope | None, replaces: bool) -> tuple[Pointer | None, int]:
        """The pointer a change starts from, and its seq; refuses to sign on top of a
        pointer the signing key cannot vouch for (unless the change ``replaces`` it)."""
        if envelope is None:
            return None, 0
        pointer = envelope.pointer
        if self._signer is None:
            if envelope.payload is not None:
                raise ChannelError(
                    f"{self.where}: the pointer is signed: give --sign-key (hosts that require "
                    "signatures refuse an unsigned one)"
                )
            return pointer, pointer.seq
        keys = [self._signer.public_key(), *self._trusted]
        ours = (pointer.model, pointer.channel) == (self.model, self.channel)
        if signed_by(envelope, keys) and ours:
            return pointer, pointer.seq
        if not replaces:
            raise ChannelError(
                f"{self.where}: the current pointer is not signed by this key (unsigned, forged, "
                "or another key's): not signing what it says; replace it with `modelsync "
                "release set --stable N` or `promote --version N`"
            )
        return None, 0

    def _update(self, change: Change, replaces: bool = False) -> Pointer:
        envelope, tag = self.read_envelope()
        base, base_seq = self._base(envelope, replaces)
        now = self._wall()
        # Clock-based, so that a pointer that replaces an untrusted one still outranks
        # every pointer hosts accepted before; +1 when two changes share a millisecond.
        seq = max(base_seq + 1, int(now * 1000))
        if seq > MAX_VERSION:
            raise ChannelError(f"{self.where}: seq {base_seq} cannot grow any more")
        update: dict[str, Any] = {
            "updated_by": self.who,
            "updated_at": now,
            "seq": seq,
            "model": self.model,
            "channel": self.channel,
            "expires": math.ceil(now + self._expires_in) if self._signer else None,
        }
        new = _validated(change(base, seq).model_copy(update=update), self.where)
        data = sign_pointer(new, self._signer) if self._signer else new.to_bytes()
        try:
            self.source.put_control(channel_key(self.channel), data, match=tag)
        except PublishConflict:
            raise ChannelError(
                f"{self.where}: changed by someone else since it was read; nothing was "
                "written: look at `modelsync release status` and run the command again"
            ) from None
        return new

    def _check_version(self, version: int) -> None:
        raw = self.source.read_object(version, MANIFEST_NAME, MAX_MANIFEST_BYTES, self._cancel)
        if raw is None:
            raise ChannelError(
                f"{self.source.url}/{version}: no such complete version (no {MANIFEST_NAME})"
            )

    def _canary(self, version: int, percent: float, nonce: str) -> Canary:
        try:
            return Canary(version=version, percent=percent, nonce=nonce)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ChannelError(one_line(f"{self.where}: canary {loc}: {err['msg']}")) from None

    def _halt(self, pointer: Pointer, canary: Canary) -> tuple[str, str] | None:
        failed = self.failures(canary)
        live: dict[str, Any] = {}
        if pointer.halt_live is not None:
            tally = ReportBook().tally(self.source, self.model, canary.version, self._cancel)
            live = {
                r.identity: r.live
                for r in tally.reports
                if r.live is not None and r.canary == canary.nonce
            }
        return first_halt(pointer, Evidence(failed, live))

    def failures(self, canary: Canary) -> dict[str, str]:
        """The hosts whose failure markers count against ``canary`` (and what they say)."""
        return failure_markers(self.source, self.model, canary.version, canary.nonce, self._cancel)

    # -- the commands ------------------------------------------------------------------

    def start(
        self,
        version: int,
        percent: float,
        halt_after: int | None,
        on_halt: str | None,
        gate: Callable[[int | None], None] | None = None,
        halt_live: LiveHalt | None = None,
    ) -> Pointer:
        """``gate`` is called with the stable version of the pointer about to be changed
        (modelsync.channel_gate): raising there writes nothing."""
        self._check_version(version)

        def change(pointer: Pointer | None, seq: int) -> Pointer:
            pointer = pointer or Pointer()
            if gate is not None:
                gate(pointer.stable)
            if pointer.canary is not None and pointer.canary.version != version:
                raise ChannelError(
                    f"{self.where}: canary {pointer.canary.version} is in progress: "
                    "promote or abort it first"
                )
            if pointer.stable == version:
                raise ChannelError(f"{self.where}: {version} is already the stable version")
            # A new canary gets a new nonce: failure markers of any earlier one (or
            # planted before this one) are filed elsewhere and do not count.
            nonce = pointer.canary.nonce if pointer.canary else secrets.token_hex(8)
            update: dict[str, Any] = {"canary": self._canary(version, percent, nonce)}
            if halt_after is not None:
                update["halt_after"] = halt_after
            if on_halt is not None:
                update["on_halt"] = on_halt
            if halt_live is not None:
                update["halt_live"] = halt_live
            return pointer.model_copy(update=update)

        return self._update(change)

    def set_percent(self, percent: float) -> Pointer:
        def change(pointer: Pointer | None, seq: int) -> Pointer:
            if pointer is None or pointer.canary is None:
                raise ChannelError(f"{self.where}: no canary in progress (release start)")
            canary = self._canary(pointer.canary.version, percent, pointer.canary.nonce)
            return pointer.model_copy(update={"canary": canary})

        return self._update(change)

    def set_stable(self, version: int, rollback: bool) -> Pointer:
        """Make ``version`` the stable one; an older one only as a deliberate rollback,
        which hosts that require signatures accept only from a signed pointer."""
        self._check_version(version)

        def change(pointer: Pointer | None, seq: int) -> Pointer:
            pointer = pointer or Pointer()
            current = pointer.stable
            if current is not None and version < current and not rollback:
                raise ChannelError(
                    f"{self.where}: {version} is older than the stable {current}: add "
                    "--rollback to move the fleet back deliberately"
                )
            if rollback and current is not None and version >= current:
                raise ChannelError(
                    f"{self.where}: --rollback: {version} is not older than the stable {current}"
                )
            if pointer.canary is not None and pointer.canary.version == version:
                raise ChannelError(
                    f"{self.where}: {version} is the canary: `modelsync release promote`"
                )
            update: dict[str, Any] = {"stable": version}
            if rollback:
                update["rollback_seq"] = seq
            return pointer.model_copy(update=update)

        return self._update(change, replaces=True)

    def promote(self, version: int | None = None, force: bool = False) -> Pointer:
        if version is not None:
            self._check_version(version)

        def change(pointer: Pointer | None, seq: int) -> Pointer:
            pointer = pointer or Pointer()
            target = version
            if target is None:
                if pointer.canary is None:
                    raise ChannelError(
                        f"{self.where}: no canary to promote (or name one with --version)"
                    )
                target = pointer.canary.version
            canary = pointer.canary
            if canary is not None and canary.version == target and not force:
                halt = self._halt(pointer, canary)
                if halt is not None:
                    raise ChannelError(
                        f"{self.where}: canary {target} is HALTED (rule {halt[0]}: {halt[1]}): "
                        "not promoted; see `modelsync release status`, or promote it anyway "
                        "with --force"
                    )
            if pointer.stable is not None and target < pointer.stable:
                raise ChannelError(
                    f"{self.where}: {target} is older than the stable {pointer.stable}: to "
                    f"move the fleet back, `modelsync release set --stable {target} --rollback`"
                )
            return pointer.model_copy(update={"stable": target, "canary": None})

        return self._update(change, replaces=version is not None)

    def abort(self) -> Pointer:
        def change(pointer: Pointer | None, seq: int) -> Pointer:
            if pointer is None or pointer.canary is None:
                raise ChannelError(f"{self.where}: no canary in progress")
            return pointer.model_copy(update={"canary": None})

        return self._update(change)

    def renew(self) -> Pointer:
        """The same pointer, signed again with a new seq and expiry (run it well within
        the expiry, e.g. daily from a scheduler)."""
        if self._signer is None:
            raise ChannelError(f"{self.where}: renew signs the pointer: give --sign-key")

        def change(pointer: Pointer | None, seq: int) -> Pointer:
            if pointer is None:
                raise ChannelError(f"{self.where}: channel pointer does not exist")
            return pointer

        return self._update(change)

    def status(self) -> RolloutStatus:
        envelope, _ = self.read_envelope()
        if envelope is None:
            raise ChannelError(f"{self.where}: channel pointer does not exist")
        pointer = envelope.pointer
        signed = envelope.payload is not None
        book = ReportBook()
        version = pointer.canary.version if pointer.canary else pointer.stable
        if version is None:
            return RolloutStatus(pointer, None, None, (), signed=signed)
        tally = book.tally(self.source, self.model, version, self._cancel)
        markers = self.failures(pointer.canary) if pointer.canary else {}
        known = {r.identity for r in tally.reports}
        if pointer.stable is not None and pointer.stable != version:
            stable = book.tally(self.source, self.model, pointer.stable, self._cancel)
            known |= {r.identity for r in stable.reports}
        reported = {r.identity for r in tally.reports} | set(markers)
        canary = pointer.canary
        expected = sorted(
            host
            for host in known - reported
            if canary is None or in_cohort(self.model, canary, host)
        )
        return RolloutStatus(pointer, version, tally, tuple(expected), markers, signed)


def _validated(pointer: Pointer, where: str) -> Pointer:
    return Pointer.parse(pointer.to_bytes(), where)
