"""Notify and confirm methods: one module each, found by name.

A method is a module of ``modelsync.notify`` (or ``modelsync.confirm``) that defines
``METHOD``: the options model it owns (the keys of ``[models.notify]`` or
``[models.confirm]`` when ``method`` names it) and how to build its notifier or
prober. ``none`` and ``server`` (the server preset's own way) are built in. Adding a
method is adding a module (and its docs): config and CLI name no method.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from modelsync.suggest import unknown_key

__all__ = ["BUILT_IN", "Method", "MethodOptions", "method_names", "parse_options"]

# No module: "none" does nothing, "server" is the server preset's (modelsync/servers/).
BUILT_IN = ("none", "server")

Opts = TypeVar("Opts", bound="MethodOptions")
B = TypeVar("B")


class MethodOptions(BaseModel):
    """The keys every method of a kind shares; a method's options subclass it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    # None: the server preset's own way (none for the custom preset).
    method: str | None = None


@dataclass(frozen=True)
class Method(Generic[Opts, B]):
    """What a method module declares as ``METHOD``."""

    options: type[Opts]
    build: Callable[[Opts], B]


def method_names(package: str) -> tuple[str, ...]:
    """The methods of ``package`` (its public modules) and the built-in ones."""
    path = importlib.import_module(package).__path__
    found = (m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))
    return (*BUILT_IN, *sorted(found))


def method_of(package: str, name: str) -> Method[Any, Any]:
    """The module ``package.name``'s METHOD; KeyError for an unknown name."""
    if name in BUILT_IN or name not in method_names(package):
        raise KeyError(name)
    found: Method[Any, Any] = importlib.import_module(f"{package}.{name}").METHOD
    return found


def parse_options(package: str, base: type[Opts], raw: Mapping[str, Any]) -> Opts:
    """``raw`` validated by the options model of the method it names (``base`` for a
    built-in one); ValueError, one line naming the key, otherwise."""
    name = raw.get("method")
    model: type[Opts] = base
    if name is not None and name not in BUILT_IN:
        try:
            model = method_of(package, str(name)).options
        except KeyError:
            known = ", ".join(repr(n) for n in method_names(package))
            raise ValueError(f"method: unknown method {name!r}; one of {known}") from None
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = unknown_key(key, (f.alias or n for n, f in model.model_fields.items()))
        msg = msg.removeprefix("Value error, ")
        raise ValueError(f"{key}: {msg}" if key else msg) from None
