from __future__ import annotations

from pathlib import Path

import pytest

from modelsync.errors import ReloadError
from modelsync.reload import ReloadTarget, render

TARGET = ReloadTarget("ranker", 12, Path("/models/ranker/12"))


def test_render_substitutes_only_the_three_names() -> None:
    """{model}, {version}, {path} are filled; anything else is a clear error."""
    assert (
        render("/v2/models/{model}/versions/{version}", TARGET) == "/v2/models/ranker/versions/12"
    )
    assert render('{{"path": "{path}"}}', TARGET) == '{"path": "/models/ranker/12"}'
    with pytest.raises(ReloadError, match="only"):
        render("{secret}", TARGET)
    with pytest.raises(ReloadError):
        render("{0}", TARGET)


def test_target_environment() -> None:
    """exec methods see the revision in MODELSYNC_* variables."""
    assert TARGET.env() == {
        "MODELSYNC_MODEL": "ranker",
        "MODELSYNC_VERSION": "12",
        "MODELSYNC_PATH": "/models/ranker/12",
    }
