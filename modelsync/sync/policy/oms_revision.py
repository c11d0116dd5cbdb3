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

Binding: the statement names files and one name (the signed directory's), no
version field. By default (``verify.oms_subject = "{model}-{version}"``) that name
must be ``<model>-<version>``, so the signature itself binds both: a signed revision
copied under another model or another number is refused before any file is fetched.
With an opt-out that leaves ``{version}`` out, the signature binds no version, and
all that is left is refusing a *replay*: a statement that signs exactly the files of
a revision this host admitted under another version (``ModelState.oms_admitted``,
recorded by admission). A replay of a revision this host never admitted passes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

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
    _check_replay(model, where, version, signed, ctx.state.oms_admitted)
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
    model: ModelConfig,
    where: str,
    version: int,
    raw: bytes,
    bundle: bytes,
    admitted: Mapping[int, str],
) -> tuple[Manifest, str]:
    """Admission of a local tree carrying ``model.sig``: the bundle holds under today's
    keys and roots, is no replay of another version in ``admitted``, and the manifest
    beside it lists exactly the files it signs. Returns the manifest and the signed
    files' fingerprint (for the caller to record once the tree is admitted)."""
    manifest = check_manifest(model, where, version, raw)
    signed = _verify(model, f"{where}: {OMS_NAME}", version, bundle)
    _check_replay(model, f"{where}: {OMS_NAME}", version, signed, admitted)
    check_files(signed, manifest.files, where)
    return manifest, signed.fingerprint()


def _check_replay(
    model: ModelConfig, where: str, version: int, signed: SignedFiles, admitted: Mapping[int, str]
) -> None:
    """RefusedError if the signature does not bind the version and it signs exactly
    the files of another version this host admitted (a copy under a new number)."""
    if model.verify.oms_version_bound:
        return  # the signed name carries the version: a copy fails the subject check
    fingerprint = signed.fingerprint()
    if admitted.get(version) == fingerprint:
        return  # this very revision, admitted here before (a rollback, a recovery)
    earlier = sorted(v for v, f in admitted.items() if f == fingerprint and v != version)
    if earlier:
        raise RefusedError(
            f"{where}: replay of version {earlier[-1]}: signs exactly the files this host "
            f"admitted as version {earlier[-1]} (verify.oms_subject = "
            f"{model.verify.oms_subject!r} does not bind the version; sign the directory as "
            f'{model.name}-{version}/ and set oms_subject = "{{model}}-{{version}}")'
        )


def _more(paths: list[str]) -> str:
    return f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""


def _verify(model: ModelConfig, where: str, version: int, bundle: bytes) -> SignedFiles:
    settings = model.verify
    subject = expected_subject(settings.oms_subject, model.name, version)
    named = [word for word in ("model", "version") if f"{{{word}}}" in settings.oms_subject]
    binds = f"binds {' and '.join(named)}" if named else "binds the name"
    return verify(
        bundle,
        where,
        keys=settings.oms_keys,
        roots=settings.oms_roots,
        subject=subject,
        subject_hint=f"verify.oms_subject {binds}; sign the directory as {subject}/",
    )
