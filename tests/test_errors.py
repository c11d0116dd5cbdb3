from __future__ import annotations

from modelsync import errors


def test_only_transient_storage_errors_are_retryable() -> None:
    """The retry policy keys off `retryable`: true for TransientSourceError and its odd
    answers alone; only an odd answer caps its attempts (retried once)."""
    retryable = {name for name in errors.__all__ if getattr(errors, name).retryable}
    assert retryable == {"TransientSourceError", "OddAnswer"}
    capped = {name for name in errors.__all__ if getattr(errors, name).attempts is not None}
    assert capped == {"OddAnswer"} and errors.OddAnswer.attempts == 2
    assert issubclass(errors.OddAnswer, errors.TransientSourceError)


def test_hierarchy_matches_the_docstring_tree() -> None:
    """Every exception named in the module docstring's tree exists with that parent."""
    assert issubclass(errors.ManifestError, errors.RefusedError)
    assert issubclass(errors.NotFoundError, errors.SourceError)
    assert issubclass(errors.TransientSourceError, errors.SourceError)
    for name in errors.__all__:
        assert name in (errors.__doc__ or ""), name
