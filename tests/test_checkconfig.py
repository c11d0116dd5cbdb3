"""[models.verify] and [models.validate] (checkconfig.py) on their own: what each key
requires, refused with a message naming it, and the OMS opt-out's warning."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from modelsync.checkconfig import ValidateConfig, VerifyConfig


def test_require_signature_needs_a_key() -> None:
    """require_signature without any key to check with is refused, naming the keys."""
    with pytest.raises(ValidationError, match="require_signature needs public_keys"):
        VerifyConfig(require_signature=True)


def test_a_public_key_that_is_not_there_is_refused(tmp_path: Path) -> None:
    """A public key path that does not exist is refused at load, naming the path."""
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValidationError, match=r"nope\.pem"):
        VerifyConfig(public_keys=(missing,))


def test_the_oms_opt_out_says_what_it_gives_up(tmp_path: Path) -> None:
    """Only an OMS config whose subject leaves out {version} carries the warning."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "oms.pub.pem"
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    key.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    bound = VerifyConfig(oms_keys=(key,))
    assert bound.oms and bound.oms_version_bound and bound.oms_unbound_warning() is None
    unbound = VerifyConfig(oms_keys=(key,), oms_subject="{model}")
    warning = unbound.oms_unbound_warning()
    assert warning is not None and "does not bind the version" in warning
    assert VerifyConfig(oms_subject="{model}").oms_unbound_warning() is None


def test_unknown_keys_and_an_empty_exec_are_refused() -> None:
    """The strict base refuses a misspelt key; exec needs at least one word."""
    with pytest.raises(ValidationError, match=r"Extra inputs are not permitted"):
        ValidateConfig.model_validate({"timout": 5})
    with pytest.raises(ValidationError, match="at least 1"):
        ValidateConfig.model_validate({"exec": []})
    assert ValidateConfig.model_validate({"exec": ["true"]}).exec_ == ("true",)
