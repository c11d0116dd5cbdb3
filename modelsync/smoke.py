"""Smoke requests: what a revision asks of itself once the server has loaded it.

A revision may carry ``modelsync-smoke.json`` (``modelsync publish --smoke FILE`` puts
it there; the manifest covers it like any file)::

    {"format": 1,
     "requests": [
       {"name": "one row",
        "body": {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [0.0]}]},
        "expect": {"outputs": [{"name": "Y", "data": [0.71]}]},
        "tolerance": 0.01}]}

``body`` is sent as it is to the server's inference API for the new version (the
preset's ``infer_url``, or ``[models.smoke] url``). ``expect`` is a subset of the
answer: every key it names must be there and match; lists match element by element
and must be as long; numbers match within ``tolerance`` (absolute, default 1e-6);
NaN in the answer fails unless ``expect`` says ``"nan"`` there; strings, booleans
and null match exactly. The first difference becomes the reason the revision is
refused: ``outputs[0].data[3] = nan, expected 0.71 ± 0.01``.

This module owns the file's format and ``[models.smoke]``; sending the requests is
modelsync.sync.smoke's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelsync.errors import RefusedError, StoreError
from modelsync.fsutil import read_regular
from modelsync.units import Duration

__all__ = [
    "SMOKE_FILE",
    "SmokeConfig",
    "SmokeFile",
    "SmokeRequest",
    "check_smoke",
    "difference",
    "load_smoke",
    "load_smoke_file",
]

SMOKE_FILE = "modelsync-smoke.json"
# A smoke file is requests and expectations, not a data set.
SMOKE_LIMIT = 1 << 20
_MAX_REQUESTS = 100
# Deeper bodies or expectations are not inference requests; bounding them keeps the
# comparison's recursion far from Python's limit, whatever a bucket holds.
_MAX_DEPTH = 32


class SmokeConfig(BaseModel):
    """[models.smoke]: how a model's revisions are smoke-tested after the server loads them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A revision without a smoke file is refused (false: it is served as before).
    required: bool = False
    # The time every request of one revision may take together.
    timeout: Duration = Field(default=10.0, gt=0)
    # Where the requests go, with {model} and {version}: for custom servers, or to
    # override a preset's inference endpoint.
    url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")

    @field_validator("url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            value.format(model="m", version=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{model}} and {{version}} may be filled in ({exc})") from None
        return value


class SmokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", max_length=200)
    body: dict[str, Any]
    expect: Any = None
    tolerance: float = Field(default=1e-6, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _shallow(self) -> SmokeRequest:
        for key in ("body", "expect"):
            if _depth(getattr(self, key)) > _MAX_DEPTH:
                raise ValueError(f"{key} is nested deeper than {_MAX_DEPTH} levels")
        return self


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iteratively: any depth is safe)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > _MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            stack.extend((child, level + 1) for child in children)
    return deepest


class SmokeFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1]
    requests: list[SmokeRequest] = Field(min_length=1, max_length=_MAX_REQUESTS)


def load_smoke(revision: Path) -> SmokeFile | None:
    """The smoke file of the revision at ``revision``; None when it carries none.
    ValueError (one line naming the file and the key) for one that is malformed."""
    try:
        return load_smoke_file(revision / SMOKE_FILE)
    except FileNotFoundError:
        return None


def load_smoke_file(path: Path) -> SmokeFile:
    """The smoke file at ``path``; FileNotFoundError when there is none, ValueError
    (one line naming the file and the key) for one that is malformed."""
    try:
        raw = read_regular(path, SMOKE_LIMIT)
    except StoreError as exc:
        raise ValueError(str(exc)) from None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    try:
        return SmokeFile.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        raise ValueError(f"{path}: {where}: {err['msg']}") from None


def check_smoke(revision: Path, config: SmokeConfig) -> None:
    """RefusedError, before any server sees the staged revision at ``revision``, when
    its smoke file is malformed or it has none and ``config`` requires one."""
    try:
        smoke = load_smoke(revision)
    except ValueError as exc:
        raise RefusedError(f"unusable smoke file: {exc}") from None
    if smoke is None and config.required:
        raise RefusedError(f"no {SMOKE_FILE} in the revision, and the model requires one")


def difference(answer: Any, expect: Any, tolerance: float, at: str = "") -> str | None:
    """The first place where ``answer`` does not match ``expect`` (a subset), as
    ``path = got, expected want``; None when it matches."""
    if isinstance(expect, dict):
        if not isinstance(answer, dict):
            return f"{at or '(answer)'} = {_shown(answer)}, expected an object"
        for key, want in expect.items():
            where = f"{at}.{key}" if at else str(key)
            if key not in answer:
                return f"{where} missing, expected {_shown(want)}"
            found = difference(answer[key], want, tolerance, where)
            if found:
                return found
        return None
    if isinstance(expect, list):
        if not isinstance(answer, list):
            return f"{at} = {_shown(answer)}, expected a list of {len(expect)}"
        if len(answer) != len(expect):
            return f"{at} has {len(answer)} elements, expected {len(expect)}"
        for i, (got, want) in enumerate(zip(answer, expect, strict=True)):
            found = difference(got, want, tolerance, f"{at}[{i}]")
            if found:
                return found
        return None
    if expect == "nan":
        if isinstance(answer, float) and math.isnan(answer):
            return None
        return f"{at} = {_shown(answer)}, expected nan"
    if _number(expect):
        if not _number(answer):
            return f"{at} = {_shown(answer)}, expected {expect} ± {tolerance:g}"
        if math.isnan(answer) or not abs(answer - expect) <= tolerance:
            return f"{at} = {_shown(answer)}, expected {expect} ± {tolerance:g}"
        return None
    if answer != expect or type(answer) is not type(expect):
        return f"{at} = {_shown(answer)}, expected {_shown(expect)}"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    try:
        text = json.dumps(value) if not isinstance(value, float) else repr(value)
    except (RecursionError, ValueError):
        return "(nested too deeply to show)"
    return text if len(text) <= 80 else text[:77] + "..."
