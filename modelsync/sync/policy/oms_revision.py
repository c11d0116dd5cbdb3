"""A revision signed with OpenSSF Model Signing: ``model.sig`` read first, verified,
and its per-file digests made the revision's file list (modelsync.oms).

In the bucket, ``model.sig`` written last marks the revision complete, as the
manifest does for modelsync's own format. The bundle is verified from its bytes
alone; then one listing of the revision must hold exactly the signed files (nothing
unsigned beside them, nothing signed missing) and gives their sizes. No file is
fetched before all of that holds. What the download then writes beside the files
is a manifest derived from the signed list plus the bundle itself, so admission
verifies the bundle again against the keys and roots configured at that moment and
checks that the manifest lists exactly what it signs.

Binding: the statement names files and a model name, not a version. The model is
bound by the bucket path (``<source>/<version>/``), the keys configured for this
model, and the statement's model name (``verify.oms_subject``, the model's name by
default); a version is bound only if ``oms_subject`` names ``{version}``.
"""

from __future__ import annotations

import functools

from modelsync.config import ModelConfig
from modelsync.errors import RefusedError
from modelsync.manifest import FileEntry, Manifest
from modelsync.oms import OMS_NAME, SignedFiles, check_files, expected_subject, verify
from modelsync.retry import call_with_retry
from modelsync.sources import Source
from modelsync.sync.context import PassContext
from modelsync.sync.policy.candidate import Candidate, check_manifest, guard

__all__ = ["check_oms_tree", "oms_candidate"]


def oms_candidate(ctx: PassContext, source: Source, version: int, bundle: bytes) -> Candidate:
    """The revision ``bundle`` signs, checked against one listing of ``version``;
    RefusedError (one line) if the signature or the listing does not hold."""
    where = f"{source.url}/{version}/{OMS_NAME}"
    with guard(where):
        return _candidate(ctx, source, version, bundle, where)


def _candidate(
    ctx: PassContext, source: Source, version: int, bundle: bytes, where: str
) -> Candidate:
    model = ctx.model
    signed = _verify(model, where, version, bundle)
    listing = call_with_retry(
        functools.partial(source.list_objects, version, ctx.cancel),
        ctx.retry,
        ctx.cancel,
        f"{source.url}/{version}: list",
        ctx.log,
    )
    sizes = {o.name: o.size for o in listing if o.name != OMS_NAME}
    unsigned = sorted(sizes.keys() - signed.files.keys())
    if unsigned:
        raise RefusedError(f"{where}: {unsigned[0]}: present but not signed{_more(unsigned)}")
    missing = sorted(signed.files.keys() - sizes.keys())
    if missing:
        raise RefusedError(f"{where}: {missing[0]}: signed but missing{_more(missing)}")
    entries = tuple(FileEntry(p, sizes[p], sha) for p, sha in sorted(signed.files.items()))
    updated = max(o.updated for o in listing)
    manifest = Manifest(
        model.name,
        version,
        updated,
        entries,
        metadata={"signature": "openssf-model-signing", "signer": signed.signer},
    )
    raw = manifest.to_bytes()
    ctx.log.info("OMS signature verified", version=version, signer=signed.signer)
    return Candidate(version, check_manifest(model, where, version, raw), raw, oms_bundle=bundle)


def check_oms_tree(
    model: ModelConfig, where: str, version: int, raw: bytes, bundle: bytes
) -> Manifest:
    """Admission of a local tree carrying ``model.sig``: the bundle holds under today's
    keys and roots, and the manifest beside it lists exactly the files it signs."""
    manifest = check_manifest(model, where, version, raw)
    signed = _verify(model, f"{where}: {OMS_NAME}", version, bundle)
    check_files(signed, manifest.files, where)
    return manifest


def _more(paths: list[str]) -> str:
    return f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""


def _verify(model: ModelConfig, where: str, version: int, bundle: bytes) -> SignedFiles:
    settings = model.verify
    return verify(
        bundle,
        where,
        keys=settings.oms_keys,
        roots=settings.oms_roots,
        subject=expected_subject(settings.oms_subject, model.name, version),
    )
