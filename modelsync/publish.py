"""The producer's side: upload a directory as a new revision, manifest (or model.sig) last."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from modelsync.cancel import CancelToken
from modelsync.errors import PublishConflict, PublishError
from modelsync.fsutil import read_regular
from modelsync.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    OMS_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    build_manifest,
    hash_file,
)
from modelsync.oms import key_kind
from modelsync.oms import sign as sign_oms
from modelsync.retry import RetryPolicy, call_with_retry
from modelsync.signing import load_private_key, sign
from modelsync.smoke import SMOKE_FILE, load_smoke_file
from modelsync.sources import SourceFactory, open_source

__all__ = ["publish"]


def _with_smoke(manifest: Manifest, smoke: Path, where: str) -> Manifest:
    """``manifest`` with the smoke file added as SMOKE_FILE (PublishError when it does
    not parse, or the directory carries one of its own)."""
    if any(entry.path == SMOKE_FILE for entry in manifest.files):
        raise PublishError(f"{where}: already holds {SMOKE_FILE}; --smoke would replace it")
    try:
        load_smoke_file(smoke)
    except ValueError as exc:
        raise PublishError(f"--smoke: {exc}") from None
    size, digest = hash_file(smoke)
    files = (*manifest.files, FileEntry(SMOKE_FILE, size, digest))
    return Manifest.parse(replace(manifest, files=files).to_bytes(), where)


def publish(
    src: Path,
    url: str,
    *,
    version: int | None = None,
    metrics: Mapping[str, float] | None = None,
    metadata: Mapping[str, Any] | None = None,
    concurrency: int = 8,
    clock: Callable[[], float] = time.time,
    retry: RetryPolicy | None = None,
    sources: SourceFactory = open_source,
    source_options: Mapping[str, Any] | None = None,
    sign_key: Path | None = None,
    sign_cert: Path | None = None,
    sign_chain: Sequence[Path] = (),
    smoke: Path | None = None,
    progress: Callable[[str, int, int], AbstractContextManager[Callable[[int], None]]]
    | None = None,
) -> int:
    """Upload ``src`` as ``<url>/<version>/`` and return the version.

    Files go first, then the signature (with ``sign_key``), the manifest last: a
    reader never sees a half revision as complete. With an EC ``sign_key`` the
    revision is an OpenSSF Model Signing one: files first, ``model.sig`` last (with
    ``sign_cert`` and ``sign_chain``: the certificate method), no manifest, its
    statement named ``<model>-<version>`` (binding both, docs/signing.md). An
    existing complete version is never overwritten, and the last object is written
    create-only where the store has such a write, so two publishers cannot both
    complete one version.

    ``progress`` (modelsync.progress: a bar, or a log line every few seconds) is told
    each file's bytes as its upload completes. ``smoke``: a smoke file
    (modelsync.smoke) uploaded as the revision's ``modelsync-smoke.json``, listed in
    the manifest (and so covered by its signature) like any file.
    """
    oms = sign_key is not None and key_kind(sign_key) == "ec"
    key = load_private_key(sign_key) if sign_key is not None and not oms else None
    if (sign_cert is not None or sign_chain) and not oms:
        raise PublishError("--sign-cert and --sign-chain need an EC --sign-key")
    if oms and (metrics or metadata):
        raise PublishError(
            "an OpenSSF-signed revision carries no manifest: --metric and --meta cannot "
            "be published with an EC --sign-key"
        )
    last = OMS_NAME if oms else MANIFEST_NAME
    if not src.is_dir():
        raise PublishError(f"{src}: not a directory")
    now = clock()
    version = version if version is not None else int(now)
    model = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or urlsplit(url).netloc
    log = structlog.get_logger().bind(model=model, version=version)
    policy = retry or RetryPolicy()
    cancel = CancelToken()
    source = sources(url.rstrip("/"), source_options or {})
    try:
        existing = call_with_retry(
            lambda: source.read_object(version, last, MAX_MANIFEST_BYTES),
            policy,
            cancel,
            f"{url}/{version}/{last}",
            log,
        )
        if existing is not None:
            raise PublishError(
                f"{url}/{version} already exists and is complete; publish a new version"
            )
        manifest = build_manifest(
            src,
            model,
            version,
            created=datetime.fromtimestamp(now, UTC),
            metrics=metrics,
            metadata=metadata,
        )
        paths = {entry.path: src / entry.path for entry in manifest.files}
        if smoke is not None:
            manifest = _with_smoke(manifest, smoke, str(src))
            paths[SMOKE_FILE] = smoke
        last_bytes = manifest.to_bytes()
        if oms:
            assert sign_key is not None
            # Signed before any upload: a key that does not match its certificate
            # fails here, not after the files went up. Named <model>-<version>, what
            # the default verify.oms_subject expects: the signature binds the version.
            last_bytes = sign_oms(
                manifest.files,
                f"{model}-{version}",
                sign_key,
                certificate=sign_cert,
                chain=sign_chain,
            )
        log.info("publishing", files=len(manifest.files), bytes=manifest.total_size)

        def upload(rel: str) -> None:
            call_with_retry(
                lambda: source.upload(version, rel, paths[rel]),
                policy,
                cancel,
                f"{url}/{version}/{rel}",
                log,
            )

        sizes = {e.path: e.size for e in manifest.files}
        shown = (
            progress(model, version, manifest.total_size)
            if progress is not None
            else nullcontext(lambda _count: None)
        )
        with shown as advance, ThreadPoolExecutor(max_workers=concurrency) as pool:
            # Largest first: the bar's rate settles early and the last file is small.
            order = sorted(sizes, key=lambda rel: -sizes[rel])
            futures = {pool.submit(upload, rel): rel for rel in order}
            for future in as_completed(futures):
                future.result()
                advance(sizes[futures[future]])
        with tempfile.TemporaryDirectory() as tmp:
            manifest_file = Path(tmp) / last
            manifest_file.write_bytes(last_bytes)
            if key is not None:
                signature_file = Path(tmp) / SIGNATURE_NAME
                signature_file.write_bytes(sign(key, manifest.to_bytes()))
                call_with_retry(
                    lambda: source.upload(version, SIGNATURE_NAME, signature_file),
                    policy,
                    cancel,
                    f"{url}/{version}/{SIGNATURE_NAME}",
                    log,
                )
            try:
                call_with_retry(
                    lambda: source.upload(version, last, manifest_file, exclusive=True),
                    policy,
                    cancel,
                    f"{url}/{version}/{last}",
                    log,
                )
            except PublishConflict as exc:
                # A retried write may find its own first attempt: that one is ours.
                ours = read_regular(manifest_file, MAX_MANIFEST_BYTES)
                if source.read_object(version, last, MAX_MANIFEST_BYTES) != ours:
                    raise PublishConflict(
                        f"{url}/{version}: another publisher completed this version first; "
                        "publish a new version"
                    ) from exc
        log.info("published", url=f"{url}/{version}")
        return version
    finally:
        source.close()
