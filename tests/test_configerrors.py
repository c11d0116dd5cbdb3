"""A configuration's validation error as one line: the file, the key's path through
tables and lists, and what is wrong, a misspelt key with the key it is closest to."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelsync.config import Config
from modelsync.configerrors import first_error


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: str = "eu"
    retries: int = Field(default=1, ge=0)


class _Root(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    models: tuple[_Inner, ...] = ()


def _line(raw: dict[str, object], root: type[BaseModel] = _Root) -> str:
    with pytest.raises(ValidationError) as caught:
        root.model_validate(raw)
    return str(first_error(caught.value, "m.toml", root))


def test_a_misspelt_key_names_its_path_and_the_key_meant() -> None:
    line = _line({"name": "a", "models": [{}, {"regoin": "us"}]})
    assert line == "m.toml: models[1].regoin: unknown key; did you mean 'region'?"


def test_the_misspelling_wins_over_the_missing_key_it_causes() -> None:
    assert _line({"nmae": "a"}) == "m.toml: nmae: unknown key; did you mean 'name'?"


def test_a_bad_value_says_what_is_wrong_where() -> None:
    line = _line({"name": "a", "models": [{"retries": -1}]})
    assert line == "m.toml: models[0].retries: Input should be greater than or equal to 0"


def test_one_models_table_is_told_to_use_double_brackets(tmp_path: Path) -> None:
    line = _line({"store": str(tmp_path), "models": 3}, Config)
    assert line.startswith("m.toml: models: must be a list of tables: write [[models]]")
