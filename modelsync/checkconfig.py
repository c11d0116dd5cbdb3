"""The checks a revision passes before any server sees it: [models.validate] (load it,
call it, run your own loader) and [models.verify] (Ed25519 signatures over the
manifest, OpenSSF Model Signing bundles). Apart from config.py, which holds the rest
of a model's keys."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from modelsync.configbase import Strict
from modelsync.errors import ConfigError
from modelsync.units import Duration

__all__ = ["ValidateConfig", "VerifyConfig"]


class ValidateConfig(Strict):
    """Checks run on a downloaded revision before the server ever sees it."""

    # Load the SavedModel with TensorFlow in a child process (needs the tensorflow extra).
    tensorflow: bool = False
    signatures: tuple[str, ...] = ("serving_default",)
    # {signature: {input name: nested list}}: each signature is called with these inputs.
    smoke_input: dict[str, dict[str, Any]] | None = None
    # Your own loader: run on the staged revision (MODELSYNC_PATH, _MODEL, _VERSION in
    # its environment) before any server sees it; a non-zero exit refuses the revision.
    exec_: tuple[str, ...] | None = Field(default=None, alias="exec", min_length=1)
    timeout: Duration = 120.0

    @field_validator("tensorflow")
    @classmethod
    def _tensorflow_installed(cls, value: bool) -> bool:
        if value and importlib.util.find_spec("tensorflow") is None:
            raise ValueError(
                "needs TensorFlow, which is not installed: pip install 'modelsync[tensorflow]'"
            )
        return value


class VerifyConfig(Strict):
    """Authenticity, checked before any download: Ed25519 signatures over the manifest,
    and OpenSSF Model Signing bundles (model.sig, modelsync.oms)."""

    # PEM public keys; any one of them may have signed (several during a rotation).
    public_keys: tuple[Path, ...] = ()
    # Refuse revisions without a signature (unsigned ones are otherwise accepted).
    require_signature: bool = False
    # OMS key method: PEM EC public keys (P-256/384/521), any one of them may have signed.
    oms_keys: tuple[Path, ...] = ()
    # OMS certificate method: PEM root certificates the signing chain must lead to.
    oms_roots: tuple[Path, ...] = ()
    # The name the OMS statement must carry ({model} and {version} are filled in): the
    # signed directory's name, the only place an OMS signature can name a version. The
    # default binds both; "{model}" (or "" for any name) is an opt-out for pipelines
    # that cannot name the directory, and leaves the version unbound (docs/signing.md).
    oms_subject: str = "{model}-{version}"

    @property
    def oms(self) -> bool:
        """Whether model.sig bundles are read for this model."""
        return bool(self.oms_keys or self.oms_roots)

    @property
    def oms_version_bound(self) -> bool:
        """Whether an OMS signature binds the version (``oms_subject`` names it)."""
        return "{version}" in self.oms_subject

    def oms_unbound_warning(self) -> str | None:
        """What an operator must know when OMS signatures do not bind the version
        (None when they do, or when no model.sig is read)."""
        if not self.oms or self.oms_version_bound:
            return None
        return (
            f"verify.oms_subject = {self.oms_subject!r} does not name {{version}}: an OMS "
            "signature does not bind the version, so a bucket writer without the key can "
            "copy an older signed revision under a newer number; only a replay of a "
            'version this host admitted is refused (set oms_subject = "{model}-{version}" '
            "and sign the directory as <model>-<version>/)"
        )

    @model_validator(mode="after")
    def _keys_load(self) -> VerifyConfig:
        if self.require_signature and not (self.public_keys or self.oms):
            raise ValueError("require_signature needs public_keys, oms_keys or oms_roots")
        if self.oms:
            from modelsync.oms import check_public_key, check_roots

            try:
                for path in self.oms_keys:
                    check_public_key(path)
                for path in self.oms_roots:
                    check_roots(path)
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        for path in self.public_keys:
            # cryptography costs ~16 ms to import: only configs with keys pay.
            from modelsync.signing import load_public_key

            try:
                load_public_key(path)
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        return self
