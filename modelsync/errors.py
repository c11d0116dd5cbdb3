"""The exceptions modelsync raises, translated at the edge from backend errors.

ModelsyncError                 base: one clear line; ``retryable`` says whether to try again
├── ConfigError                a configuration that cannot be used (the CLI exits 2)
├── ChannelError               a release channel's pointer is missing or unusable
├── GateError                  a gate's baseline revision is missing or cannot be trusted
├── RefusedError               a revision that is wrong for good: never retried
│   └── ManifestError          a manifest that is malformed or does not describe its revision
├── IntegrityError             bytes damaged in transit (storage checksum mismatch)
├── SourceError                the storage backend failed
│   ├── TransientSourceError   worth retrying: 429, 5xx, resets, timeouts
│   │   └── OddAnswer          an answer that is not what was asked for: retried once
│   ├── NotFoundError          the bucket or object does not exist
│   ├── EmptySourceError       the source holds no revision at all (a typo'd prefix?)
│   └── AccessDeniedError      401/403: credentials or permissions
├── StoreError                 the local store cannot be written (disk full, damaged layout)
│   └── NoSpaceError           a download does not fit the free space now (it may free up)
├── PublishError               a publish that would overwrite or cannot proceed
│   └── PublishConflict        a conditional write found the object already there
├── ReloadError                the serving process did not take the revision (notify/confirm)
│   ├── LoadFailed             the server said it could not load it (its own words kept)
│   ├── LiveCheckFailed        it loaded, but failed a live check (smoke requests): refused
│   └── LoadUnknown            no verdict: timed out, or the server could not be reached
│       └── ServerNotRunning   nothing listens / no process to tell
└── Cancelled                  stop requested or the pass deadline passed
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "Cancelled",
    "ChannelError",
    "ConfigError",
    "EmptySourceError",
    "GateError",
    "IntegrityError",
    "LiveCheckFailed",
    "LoadFailed",
    "LoadUnknown",
    "ManifestError",
    "ModelsyncError",
    "NoSpaceError",
    "NotFoundError",
    "OddAnswer",
    "PublishConflict",
    "PublishError",
    "RefusedError",
    "ReloadError",
    "ServerNotRunning",
    "SourceError",
    "StoreError",
    "TransientSourceError",
]


class ModelsyncError(Exception):
    """Base class: the message is one line that names what failed and where."""

    retryable = False
    # The attempts worth making in all, when fewer than the retry policy allows
    # (retry.call_with_retry); None: the policy's.
    attempts: int | None = None


class ConfigError(ModelsyncError):
    """The configuration (file, environment or flags) cannot be used."""


class ChannelError(ModelsyncError):
    """A release channel's pointer is missing or unusable: the host keeps what it serves."""


class GateError(ModelsyncError):
    """A gate's baseline revision is missing or fails its checks: candidates wait (the
    pass fails, the host keeps what it serves) rather than being refused for its fault."""


class RefusedError(ModelsyncError):
    """A revision is wrong for good (bad manifest, bytes that differ from it, bad
    signature, failed validation, refused by the server): never tried again."""

    # The refused revision's manifest metrics, when its manifest could be read (the
    # status page shows them beside the active revision's).
    metrics: dict[str, float] | None = None


class ManifestError(RefusedError):
    """A manifest is malformed, or a revision does not match its manifest."""


class IntegrityError(ModelsyncError):
    """Bytes damaged between storage and disk (a storage checksum did not match)."""


class SourceError(ModelsyncError):
    """The storage backend failed."""


class TransientSourceError(SourceError):
    """A storage failure worth retrying (throttling, server errors, resets, timeouts)."""

    retryable = True


class OddAnswer(TransientSourceError):
    """An answer that is not what was asked for: in another encoding than identity, or
    other bytes than the range. Never the revision's fault for good (so never a
    refusal), and retried, but once: one such answer may be a hop's hiccup, the same
    answer again is the object as stored (a Content-Encoding its writer set, which S3
    and Azure hand back as they were told) or a hop that always answers so. More
    backoff changes nothing then, except that each revision stored so would spend the
    whole retry schedule (up to 15.5 s of backoff by default) of the pass's deadline,
    which the revisions below need to stand in (variant campaign, class blockers)."""

    attempts = 2


class NotFoundError(SourceError):
    """The bucket or object does not exist."""


class EmptySourceError(SourceError):
    """The source holds no revision at all: a typo'd or empty prefix looks the same."""


class AccessDeniedError(SourceError):
    """The credentials were refused or lack permission."""


class StoreError(ModelsyncError):
    """The local store cannot be read or written."""


class NoSpaceError(StoreError):
    """A revision's download does not fit the volume's free space now: a fact about
    this revision and this moment (space may free up), not about the store failing."""


class PublishError(ModelsyncError):
    """A publish was refused (for example, the version already exists)."""


class PublishConflict(PublishError):
    """An exclusive upload found the object already written (by another publisher)."""


class ReloadError(ModelsyncError):
    """The serving process did not confirm the revision."""


class LoadFailed(ReloadError):
    """The server answered that it could not load the revision: roll back and refuse it."""


class LiveCheckFailed(ReloadError):
    """The server loaded the revision, but it failed a live check (a smoke request
    answered wrong, with an error, or not in time): roll back and refuse it."""


class LoadUnknown(ReloadError):
    """No verdict from the server (timeout, unreachable): roll back, refuse only after
    this happened ``unknown_attempts`` times."""


class ServerNotRunning(LoadUnknown):
    """There is no serving process to tell (yet): nothing listens, no such process."""


class Cancelled(ModelsyncError):
    """A stop was requested or the pass deadline passed."""
