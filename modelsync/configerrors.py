"""A validation error of the configuration as the one line an operator reads: the file,
the path of the key (``models[0].source_options.region``) and what is wrong with it."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from modelsync.errors import ConfigError
from modelsync.suggest import unknown_key

__all__ = ["first_error"]


def _format_loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _table_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The configuration model of the table at ``loc`` (None where it is not one)."""
    table = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = next(
            (f for n, f in table.model_fields.items() if part in (n, f.alias)),
            None,
        )
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return None
        table = inner
    return table


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def first_error(exc: ValidationError, origin: str, root: type[BaseModel]) -> ConfigError:
    """The error an operator fixes first, in one line: where (the file, the key's
    path) and what; a misspelt key with the known key it is closest to."""
    errors = exc.errors()
    # A misspelt key also makes the key meant "missing": the misspelling is the news.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    where = tuple(p for p in err["loc"] if p not in ("function-after",))
    loc = _format_loc(where)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        table = _table_at(root, where[:-1])
        known = (f.alias or n for n, f in table.model_fields.items()) if table else ()
        msg = unknown_key(str(where[-1]), known)
    elif where[-1:] == ("models",) and err["type"] == "tuple_type":
        msg = "must be a list of tables: write [[models]] (two brackets) above each model"
    msg = msg.removeprefix("Value error, ")
    return ConfigError(f"{origin}: {loc}: {msg}")
