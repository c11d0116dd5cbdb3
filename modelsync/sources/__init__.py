"""Storage backends behind one seam: the registry that picks one by URL.

A backend is one module in ``modelsync/backends/`` that exposes ``BACKEND`` (a
``modelsync.sources.base.Backend``): the URL schemes it serves, how it checks a
URL, its options model (``[models.source_options]``) and how it opens a Source.
Nothing outside that module names a scheme: adding a backend is adding a module.

Backend modules import their client libraries only when a source is opened, so a
process pays for the libraries of the schemes it uses and nothing else.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from modelsync.errors import ConfigError
from modelsync.sources.base import Backend, Connections, ObjectInfo, Sink, Source

__all__ = [
    "Backend",
    "Connections",
    "ObjectInfo",
    "Sink",
    "Source",
    "SourceFactory",
    "backend_for",
    "backends",
    "check_source",
    "open_source",
    "source_options",
]

# (url, [models.source_options]) -> Source: open_source, or a test's own.
SourceFactory = Callable[[str, Mapping[str, Any]], Source]


@functools.cache
def backends() -> tuple[Backend, ...]:
    """Every backend module's BACKEND, by module name (discovered once per process:
    the set is fixed by the installed code, like the module cache)."""
    import modelsync.backends as package

    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        backend = getattr(module, "BACKEND", None)
        if isinstance(backend, Backend):
            found.append(backend)
    return tuple(found)


def backend_for(url: str) -> Backend:
    """The backend serving ``url``; ValueError (one line, listing the forms) if none."""
    # The module named after the URL's scheme first (file://, gs://, s3://, az://):
    # a command for one model then imports one backend, not all of them.
    named = _backend_named(url.partition("://")[0].lower())
    if named is not None and named.claims(url):
        return named
    for backend in backends():
        if backend.claims(url):
            return backend
    forms = ", ".join(b.example for b in backends())
    raise ValueError(f"unsupported source URL {url!r}: use one of {forms}")


@functools.cache
def _backend_named(scheme: str) -> Backend | None:
    if not scheme.isidentifier():
        return None
    try:
        module = importlib.import_module(f"modelsync.backends.{scheme}")
    except ModuleNotFoundError:
        return None
    backend = getattr(module, "BACKEND", None)
    return backend if isinstance(backend, Backend) else None


def source_options(backend: Backend, raw: Mapping[str, Any]) -> BaseModel:
    """``raw`` validated by the backend's options model; ValueError naming the key."""
    try:
        return backend.options.model_validate(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ValueError(
            f"source_options.{key}: {msg.removeprefix('Value error, ')} ({backend.name} source)"
        ) from exc


def check_source(url: str, raw: Mapping[str, Any] | None = None) -> tuple[str, BaseModel]:
    """The URL in its normal form and its validated options; ValueError otherwise."""
    backend = backend_for(url)
    return backend.parse(url), source_options(backend, raw or {})


def open_source(
    url: str, options: Mapping[str, Any] | None = None, connections: Connections | None = None
) -> Source:
    """A Source for ``url``; ConfigError for an unknown URL or bad options. Sources
    opened with one ``connections`` share clients (the caller closes it after them)."""
    try:
        normal, checked = check_source(url, options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return backend_for(normal).open(normal, checked, connections)
