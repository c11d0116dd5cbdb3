"""Server presets: how modelsync works with one kind of model server.

A preset is one module here that owns everything about its server: its options
(``[models.server_options]``), its default URL, the store layout the server needs
(a ``current`` link or not, model-level files such as Triton's ``config.pbtxt``),
how it is told about a new revision, how it is asked what it did with one, and the
checks a revision must pass before that server sees it. A module here that defines
``PRESET`` is a preset, named by its module: adding a server touches its module and
the docs.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import TYPE_CHECKING

from modelsync.servers.base import ServerPreset

if TYPE_CHECKING:
    from modelsync.config import ModelConfig
    from modelsync.reload import Notifier, Prober

__all__ = ["ServerPreset", "get_preset", "notifier_for", "preset_names", "prober_for"]


@functools.cache
def _presets() -> dict[str, ServerPreset]:
    # Found once per process: the set is fixed by the installed code.
    found: dict[str, ServerPreset] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        preset = getattr(module, "PRESET", None)
        if preset is not None:
            found[info.name] = preset
    return found


def preset_names() -> list[str]:
    """Every preset's name (its module's), sorted."""
    return sorted(_presets())


def get_preset(name: str) -> ServerPreset:
    """The preset called ``name``; KeyError for an unknown one."""
    # Its own module only: a command for one model does not import every preset.
    preset = _preset_module(name)
    if preset is not None:
        return preset
    return _presets()[name]


@functools.cache
def _preset_module(name: str) -> ServerPreset | None:
    if not name.isidentifier() or name.startswith("_"):
        return None
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        return None
    preset: ServerPreset | None = getattr(module, "PRESET", None)
    return preset


def notifier_for(model: ModelConfig) -> Notifier | None:
    """How this model's server is told: [models.notify], else its preset's way."""
    method = model.notify_method
    if method == "server":
        return get_preset(model.server).notifier(model)
    if method == "none":
        return None
    from modelsync.notify import build_notifier

    return build_notifier(model.notify)


def prober_for(model: ModelConfig) -> Prober | None:
    """How this model's server is asked: [models.confirm], else its preset's way."""
    if model.confirm_method == "server":
        return get_preset(model.server).prober(model)
    from modelsync.confirm import build_prober

    return build_prober(model.confirm)
