"""A candidate revision and the checks it must pass: manifest, signature, binding, gate.

The same checks run twice: when a policy considers a version in the bucket (before
any file is fetched), and again by admission (modelsync.sync.admit) on the bytes
of the manifest in the tree about to be served. Anything in a candidate that the
checks cannot handle — a number that overflows, a type nobody expected — ends as
that revision refused with a one-line reason (``guard``), never as a crashed pass:
a hostile newest revision must not block the good one published after it.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from modelsync.config import ModelConfig
from modelsync.errors import IntegrityError, ModelsyncError, RefusedError
from modelsync.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    check_relpath,
)
from modelsync.oms import MAX_BUNDLE_BYTES, OMS_NAME
from modelsync.oneline import quote
from modelsync.retry import call_with_retry
from modelsync.sources import ObjectInfo, Source
from modelsync.sync.context import PassContext

__all__ = [
    "MAX_SIGNATURE_BYTES",
    "Candidate",
    "check_manifest",
    "check_signature",
    "guard",
    "listed_candidate",
    "read_candidate",
]

MAX_SIGNATURE_BYTES = 1024
# Reads of a manifest that fails a check before deciding (see read_candidate): two
# equal reads refuse, all different is damage on the way. The same rule as files.
_MANIFEST_READS = 3
# How long a revision without a manifest is watched for changes once its times say
# it settled (at most ``settle``).
_RECHECK_S = 5.0


@dataclass(frozen=True)
class Candidate:
    version: int
    manifest: Manifest
    # None for a revision described by a listing (complete_marker mode).
    manifest_bytes: bytes | None
    signature: bytes | None = None
    # The OpenSSF Model Signing bundle (model.sig) the file list came from, if any.
    oms_bundle: bytes | None = None


@contextlib.contextmanager
def guard(where: str) -> Iterator[None]:
    """Turn anything but modelsync's own errors into RefusedError for this revision.

    The checks below parse what a bucket writer wrote; an input they did not foresee
    (OverflowError of a 400-digit number, a TypeError of a surprising type) is that
    input's fault, so it refuses the revision with a reason instead of failing every
    pass. modelsync's own errors (a network failure, a full disk) pass through as
    they are: they say nothing about the revision.
    """
    try:
        yield
    except ModelsyncError:
        raise
    except (ArithmeticError, ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise RefusedError(f"{where}: cannot be evaluated ({type(exc).__name__}: {text})") from exc


def check_manifest(model: ModelConfig, where: str, version: int, raw: bytes) -> Manifest:
    """Parse manifest bytes, bind them to ``model`` and ``version``, apply the gate and
    limits; RefusedError (with the manifest's metrics, for the status page) if any fails."""
    with guard(where):
        manifest = Manifest.parse(raw, where)
        try:
            _check_parsed(model, manifest, version, where)
        except RefusedError as exc:
            exc.metrics = dict(manifest.metrics)
            raise
    return manifest


def check_relative(ctx: PassContext, source: Source, candidate: Candidate) -> None:
    """The model's relative gate (modelsync.sync.policy.relative), imported late: it
    builds on this module's checks."""
    from modelsync.sync.policy.relative import check_relative as check

    check(ctx, source, candidate)


def _check_parsed(model: ModelConfig, manifest: Manifest, version: int, where: str) -> None:
    if manifest.version != version:
        raise RefusedError(f"{where}: says version {manifest.version}, stored as {version}")
    if manifest.model != model.name:
        # Signed or not: a revision of another model is never served as this one.
        raise RefusedError(
            f"{where}: is a revision of model {quote(manifest.model)}, not {model.name!r}"
        )
    for metric, bar in sorted(model.gate.items()):
        value = manifest.metrics.get(metric)
        if value is None:
            raise RefusedError(f"{where}: gate: metric {metric!r} is missing")
        if not math.isfinite(value):
            raise RefusedError(f"{where}: gate: metric {metric!r} is not a finite number")
        if value < bar:
            raise RefusedError(f"{where}: gate: {metric} = {value:g} is below {bar:g}")
    check_max_bytes(model, manifest, where)


def check_max_bytes(model: ModelConfig, manifest: Manifest, where: str) -> None:
    if model.max_bytes is not None and manifest.total_size > model.max_bytes:
        raise RefusedError(
            f"{where}: revision is {manifest.total_size} bytes, over max_bytes {model.max_bytes}"
        )


def check_signature(model: ModelConfig, where: str, raw: bytes, signature: bytes | None) -> bool:
    """Whether the manifest bytes ``raw`` carry a valid signature under the model's keys
    as configured now; RefusedError for a bad one, or a missing one that is required.
    False: no keys configured, or unsigned and not required."""
    settings = model.verify
    if not settings.public_keys:
        if settings.require_signature:  # only OMS keys or roots: model.sig was required
            raise RefusedError(f"{where}: revision has no model.sig (verify.require_signature)")
        return False
    if signature is None:
        if settings.require_signature:
            raise RefusedError(f"{where}: revision is unsigned (verify.require_signature)")
        return False
    # cryptography costs ~16 ms to import: only passes that check a signature pay.
    from modelsync.signing import load_public_key
    from modelsync.signing import verify as verify_signature

    keys = [load_public_key(path) for path in settings.public_keys]
    if not verify_signature(keys, raw, signature):
        raise RefusedError(
            f"{where}: signature does not match any configured public key "
            "(manifest tampered with, or signed by another key)"
        )
    return True


def read_candidate(ctx: PassContext, source: Source, version: int) -> Candidate | None:
    """``version`` from the bucket as a candidate, checked; None while it is incomplete
    (no manifest yet). RefusedError when it fails a check.

    A refusal is permanent, so it rests on the bytes as published, established the
    way files are (transfer.py): what failed a check is read again, and the revision
    is refused only when two reads bring the same bytes and so the same refusal; a
    different read each time is damage on the way (IntegrityError: not a refusal).
    One odd answer (a proxy that compressed it, a cut body that still parsed) must not
    refuse a good revision for good."""
    if ctx.model.complete_marker is not None:
        return listed_candidate(ctx, source, version)
    refused: set[tuple[tuple[str, bytes | None], ...]] = set()
    where = f"{source.url}/{version}"
    for _ in range(_MANIFEST_READS):
        reads: list[tuple[str, bytes | None]] = []
        try:
            return _read_candidate(ctx, source, version, reads)
        except RefusedError as exc:
            seen = tuple(reads)
            if seen in refused:
                raise
            refused.add(seen)
            # Said as what it is: most often the revision is bad and the second read
            # confirms it; damage on the way is the rarer case the read rules out.
            ctx.log.info(
                "revision failed a check; reading its manifest once more to confirm",
                version=version,
                reason=str(exc),
            )
    raise IntegrityError(
        f"{where}: manifest failed its checks on {_MANIFEST_READS} reads, with different "
        "bytes each time (damaged on the way); not refused, read again next pass"
    )


def _read_candidate(
    ctx: PassContext, source: Source, version: int, reads: list[tuple[str, bytes | None]]
) -> Candidate | None:
    """One read of the revision's description (what was read appended to ``reads``)."""
    if ctx.model.verify.oms:
        bundle = _read(ctx, source, version, OMS_NAME, MAX_BUNDLE_BYTES, reads)
        if bundle is not None:
            from modelsync.sync.policy.oms_revision import oms_candidate

            candidate = oms_candidate(ctx, source, version, bundle)
            check_relative(ctx, source, candidate)
            return candidate
    raw = _read(ctx, source, version, MANIFEST_NAME, MAX_MANIFEST_BYTES, reads)
    if raw is None:
        return None
    where = f"{source.url}/{version}/{MANIFEST_NAME}"
    signature = None
    if ctx.model.verify.public_keys or ctx.model.verify.require_signature:
        signature = _read(ctx, source, version, SIGNATURE_NAME, MAX_SIGNATURE_BYTES, reads)
        sig_where = f"{source.url}/{version}/{SIGNATURE_NAME}"
        if not check_signature(ctx.model, sig_where, raw, signature):
            ctx.log.warning("unsigned revision accepted", version=version)
    candidate = Candidate(version, check_manifest(ctx.model, where, version, raw), raw, signature)
    check_relative(ctx, source, candidate)
    return candidate


def _read(
    ctx: PassContext,
    source: Source,
    version: int,
    name: str,
    limit: int,
    reads: list[tuple[str, bytes | None]],
) -> bytes | None:
    try:
        raw = call_with_retry(
            functools.partial(source.read_object, version, name, limit, ctx.cancel),
            ctx.retry,
            ctx.cancel,
            f"{source.url}/{version}/{name}",
            ctx.log,
        )
    except RefusedError:
        # Over the size limit: no bytes kept, the same answer twice refuses.
        reads.append((name, b"<over the limit>"))
        raise
    reads.append((name, raw))
    return raw


def listed_candidate(ctx: PassContext, source: Source, version: int) -> Candidate | None:
    """A revision from a producer that writes no manifest: complete when the marker
    exists and nothing changed for ``settle``; described by the listing."""
    model, cancel, log = ctx.model, ctx.cancel, ctx.log
    assert model.complete_marker is not None
    if model.verify.require_signature:
        raise RefusedError(
            f"{source.url}/{version}: a revision without a manifest cannot "
            "be signed (verify.require_signature)"
        )
    list_revision = functools.partial(
        call_with_retry,
        functools.partial(source.list_objects, version, cancel),
        ctx.retry,
        cancel,
        f"{source.url}/{version}: list",
        log,
    )
    objects = list_revision()
    names = {o.name for o in objects}
    if model.complete_marker not in names:
        log.debug("incomplete version (no marker yet)", version=version)
        return None
    newest = max(o.updated for o in objects)
    age = ctx.wall() - newest.timestamp()
    if age < model.settle:
        log.info(
            "version not settled yet", version=version, settle_left_s=round(model.settle - age)
        )
        return None
    # Times come from the producer, which may keep old ones (cp -p, rsync -a): the
    # listing must also stay the same while modelsync watches it for a moment.
    recheck = min(model.settle, _RECHECK_S)
    if recheck > 0:
        cancel.wait(recheck)
        if _fingerprint(list_revision()) != _fingerprint(objects):
            log.info("version still changing; not settled", version=version)
            return None
    where = f"{source.url}/{version}"
    with guard(where):
        entries = tuple(
            FileEntry(check_relpath(o.name, where), o.size, "")
            for o in sorted(objects, key=lambda o: o.name)
            if o.name not in (MANIFEST_NAME, SIGNATURE_NAME)
        )
        manifest = Manifest(model.name, version, newest, entries)
        check_max_bytes(model, manifest, where)
    candidate = Candidate(version, manifest, None)
    check_relative(ctx, source, candidate)
    return candidate


def _fingerprint(objects: list[ObjectInfo]) -> list[tuple[str, int, float, str | None]]:
    return sorted((o.name, o.size, o.updated.timestamp(), o.crc32c) for o in objects)
