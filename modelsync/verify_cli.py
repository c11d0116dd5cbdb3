"""`modelsync verify`: check a local revision against its manifest and, with
--public-key, its Ed25519 signature."""

from __future__ import annotations

from pathlib import Path

import click

from modelsync.errors import ManifestError

__all__ = ["verify"]


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Also require a valid signature by one of these Ed25519 keys (PEM).",
)
@click.option("--strict", is_flag=True, help="Files not in the manifest are an error too (exit 1).")
def verify(directory: Path, public_keys: tuple[Path, ...], strict: bool) -> int:
    """Check a local revision against its manifest (exit 0 intact, 1 damaged).

    Files a server wrote into the revision (Triton's __pycache__) are listed but
    are not damage, unless --strict."""
    from modelsync.fsutil import read_regular
    from modelsync.manifest import (
        MANIFEST_NAME,
        MAX_MANIFEST_BYTES,
        SIGNATURE_NAME,
        Manifest,
        extra_files,
        verify_dir,
    )
    from modelsync.signing import SIGNATURE_LIMIT, load_public_key
    from modelsync.signing import verify as verify_signature

    manifest_path = directory / MANIFEST_NAME
    try:
        raw = read_regular(manifest_path, MAX_MANIFEST_BYTES)
    except FileNotFoundError as exc:
        raise ManifestError(f"{manifest_path}: cannot read: {exc.strerror}") from exc
    manifest = Manifest.parse(raw, str(manifest_path))
    problems = verify_dir(directory, manifest, extra_ok=True)
    extra = extra_files(directory, manifest)
    signed_by: Path | None = None
    if public_keys:
        keys = [(path, load_public_key(path)) for path in public_keys]
        signature_path = directory / SIGNATURE_NAME
        if not signature_path.is_file():
            problems.append(f"{SIGNATURE_NAME}: missing (the revision is unsigned)")
        else:
            signature = read_regular(signature_path, SIGNATURE_LIMIT)
            signed_by = next(
                (path for path, key in keys if verify_signature([key], raw, signature)), None
            )
            if signed_by is None:
                problems.append(f"{SIGNATURE_NAME}: does not match any given public key")
    for problem in problems:
        click.echo(f"{directory}: {problem}", err=True)
    for rel in extra:
        click.echo(f"{directory}: {rel}: not in the manifest (written after download?)", err=True)
    if problems or (strict and extra):
        return 1
    click.echo(
        f"{directory}: version {manifest.version} intact "
        f"({len(manifest.files)} files, {manifest.total_size} bytes"
        + (f"; {len(extra)} extra files" if extra else "")
        + ")"
    )
    if signed_by is not None:
        click.echo(f"{directory}: signature: valid (key {signed_by})")
    elif (directory / SIGNATURE_NAME).is_file():
        click.echo(f"{directory}: signature: not checked (give --public-key PEM to check it)")
    return 0
