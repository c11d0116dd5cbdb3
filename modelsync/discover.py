"""Discovery: which revision, if any, a pass should bring in.

The newest complete, acceptable version newer than the active one. Complete means
its manifest exists (or, for producers without one, its marker exists and nothing
under it changed for ``settle``); acceptable means not refused before, a valid
manifest, above the metrics gate and under ``max_bytes``. An idle pass costs one
listing; manifests are read only for versions newer than the active one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container
from dataclasses import dataclass

import structlog

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import RefusedError
from modelsync.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    check_relpath,
)
from modelsync.retry import RetryPolicy, call_with_retry
from modelsync.sources import ObjectInfo, Source

__all__ = ["Candidate", "Discovery", "check_manifest", "check_max_bytes"]

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


class Discovery:
    """Finds the candidate of one pass; ``refuse`` records a version refused for good."""

    def __init__(
        self,
        retry: RetryPolicy,
        wall: Callable[[], float],
        refuse: Callable[[int, RefusedError], None],
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self._retry = retry
        self._wall = wall
        self._refuse = refuse
        self._log = log

    def newest(
        self,
        model: ModelConfig,
        source: Source,
        active: int | None,
        refused: Container[int],
        cancel: CancelToken,
    ) -> Candidate | None:
        """The newest complete, acceptable version newer than ``active``, or None.

        Costs one listing when nothing changed; reads a manifest only for versions
        newer than the active one.
        """
        versions = call_with_retry(
            functools.partial(source.list_versions, cancel=cancel),
            self._retry,
            cancel,
            f"{source.url}: list",
            self._log,
        )
        for version in sorted(versions, reverse=True):
            if active is not None and version <= active:
                return None
            if version in refused:
                self._log.debug("skipping refused version", version=version)
                continue
            if model.complete_marker is not None:
                try:
                    listed = self._listed_revision(model, source, version, cancel)
                except RefusedError as exc:
                    self._refuse(version, exc)
                    continue
                if listed is not None:
                    return listed
                continue
            try:
                raw = self._read_manifest(source, version, cancel)
                if raw is None:
                    self._log.debug("incomplete version (no manifest yet)", version=version)
                    continue
                signature = self._check_signature(model, source, version, raw, cancel)
                manifest = check_manifest(model, source, version, raw)
            except RefusedError as exc:
                self._refuse(version, exc)
                continue
            return Candidate(version, manifest, raw, signature)
        return None

    def exact(
        self, model: ModelConfig, source: Source, version: int, cancel: CancelToken
    ) -> Candidate | None:
        """``version`` as a candidate (a channel names it); None while it is incomplete.

        The same checks as for the newest version: signature, gate, limits.
        RefusedError when it fails one.
        """
        if model.complete_marker is not None:
            return self._listed_revision(model, source, version, cancel)
        raw = self._read_manifest(source, version, cancel)
        if raw is None:
            self._log.warning(
                "the channel names a version with no manifest (incomplete or missing)",
                version=version,
            )
            return None
        signature = self._check_signature(model, source, version, raw, cancel)
        return Candidate(version, check_manifest(model, source, version, raw), raw, signature)

    def _read_manifest(self, source: Source, version: int, cancel: CancelToken) -> bytes | None:
        return call_with_retry(
            functools.partial(
                source.read_object, version, MANIFEST_NAME, MAX_MANIFEST_BYTES, cancel
            ),
            self._retry,
            cancel,
            f"{source.url}/{version}/{MANIFEST_NAME}",
            self._log,
        )

    def _check_signature(
        self, model: ModelConfig, source: Source, version: int, raw: bytes, cancel: CancelToken
    ) -> bytes | None:
        """The manifest's signature if keys are configured; refuse a bad or missing one."""
        settings = model.verify
        if not settings.public_keys:
            return None
        where = f"{source.url}/{version}/{SIGNATURE_NAME}"
        signature = call_with_retry(
            functools.partial(source.read_object, version, SIGNATURE_NAME, 1024, cancel),
            self._retry,
            cancel,
            where,
            self._log,
        )
        if signature is None:
            if settings.require_signature:
                raise RefusedError(f"{where}: revision is unsigned (verify.require_signature)")
            self._log.warning("unsigned revision accepted", version=version)
            return None
        # cryptography costs ~16 ms to import: only passes that check a signature pay.
        from modelsync.signing import load_public_key
        from modelsync.signing import verify as verify_signature

        keys = [load_public_key(path) for path in settings.public_keys]
        if not verify_signature(keys, raw, signature):
            raise RefusedError(
                f"{where}: signature does not match any configured public key "
                "(manifest tampered with, or signed by another key)"
            )
        return signature

    def _listed_revision(
        self, model: ModelConfig, source: Source, version: int, cancel: CancelToken
    ) -> Candidate | None:
        """A revision from a producer that writes no manifest: complete when the marker
        exists and nothing changed for ``settle``; described by the listing."""
        assert model.complete_marker is not None
        if model.verify.require_signature:
            raise RefusedError(
                f"{source.url}/{version}: a revision without a manifest cannot "
                "be signed (verify.require_signature)"
            )
        list_revision = functools.partial(
            call_with_retry,
            functools.partial(source.list_objects, version, cancel),
            self._retry,
            cancel,
            f"{source.url}/{version}: list",
            self._log,
        )
        objects = list_revision()
        names = {o.name for o in objects}
        if model.complete_marker not in names:
            self._log.debug("incomplete version (no marker yet)", version=version)
            return None
        newest = max(o.updated for o in objects)
        age = self._wall() - newest.timestamp()
        if age < model.settle:
            self._log.info(
                "version not settled yet", version=version, settle_left_s=round(model.settle - age)
            )
            return None
        # Times come from the producer, which may keep old ones (cp -p, rsync -a): the
        # listing must also stay the same while modelsync watches it for a moment.
        recheck = min(model.settle, _RECHECK_S)
        if recheck > 0:
            cancel.wait(recheck)
            if _fingerprint(list_revision()) != _fingerprint(objects):
                self._log.info("version still changing; not settled", version=version)
                return None
        where = f"{source.url}/{version}"
        entries = tuple(
            FileEntry(check_relpath(o.name, where), o.size, "")
            for o in sorted(objects, key=lambda o: o.name)
            if o.name not in (MANIFEST_NAME, SIGNATURE_NAME)
        )
        manifest = Manifest(model.name, version, newest, entries)
        check_max_bytes(model, manifest, where)
        return Candidate(version, manifest, None)


def _fingerprint(objects: list[ObjectInfo]) -> list[tuple[str, int, float, str | None]]:
    return sorted((o.name, o.size, o.updated.timestamp(), o.crc32c) for o in objects)


def check_manifest(model: ModelConfig, source: Source, version: int, raw: bytes) -> Manifest:
    """Parse a candidate's manifest and apply the model's gate and limits."""
    where = f"{source.url}/{version}/{MANIFEST_NAME}"
    manifest = Manifest.parse(raw, where)
    try:
        _check_parsed(model, manifest, version, where)
    except RefusedError as exc:
        exc.metrics = dict(manifest.metrics)
        raise
    return manifest


def _check_parsed(model: ModelConfig, manifest: Manifest, version: int, where: str) -> None:
    for metric, bar in sorted(model.gate.items()):
        value = manifest.metrics.get(metric)
        if value is None:
            raise RefusedError(f"{where}: gate: metric {metric!r} is missing")
        if value < bar:
            raise RefusedError(f"{where}: gate: {metric} = {value:g} is below {bar:g}")
    if manifest.version != version:
        raise RefusedError(f"{where}: says version {manifest.version}, stored as {version}")
    if manifest.model != model.name:
        # Signed or not: a revision of another model is never served as this one.
        raise RefusedError(
            f"{where}: is a revision of model {manifest.model!r}, not {model.name!r}"
        )
    check_max_bytes(model, manifest, where)


def check_max_bytes(model: ModelConfig, manifest: Manifest, where: str) -> None:
    if model.max_bytes is not None and manifest.total_size > model.max_bytes:
        raise RefusedError(
            f"{where}: revision is {manifest.total_size} bytes, over max_bytes {model.max_bytes}"
        )
