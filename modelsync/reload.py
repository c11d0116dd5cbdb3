"""The seam between modelsync and the serving process: tell it, then hear it back.

Notifiers (modelsync/notify/) tell the server that the revision changed; probers
(modelsync/confirm/ and the server presets in modelsync/servers/) ask it, once,
what it does with a version. ``confirm.wait_loaded`` turns repeated probes into one
of three outcomes: loaded (returns), failed (LoadFailed: the server said so, with
its own words), unknown (LoadUnknown: timeout, unreachable).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from modelsync.errors import ReloadError, ServerNotRunning

__all__ = [
    "Notifier",
    "Probe",
    "ProbeState",
    "Prober",
    "ReloadTarget",
    "ServerNotRunning",
    "render",
    "server_words",
]


@dataclass(frozen=True)
class ReloadTarget:
    """The revision the server should now serve."""

    model: str
    version: int
    path: Path

    def env(self) -> dict[str, str]:
        return {
            "MODELSYNC_MODEL": self.model,
            "MODELSYNC_VERSION": str(self.version),
            "MODELSYNC_PATH": str(self.path),
        }


def render(template: str, target: ReloadTarget) -> str:
    """Substitute {model}, {version} and {path} (and nothing else) into ``template``."""
    try:
        return template.format_map(
            {"model": target.model, "version": target.version, "path": target.path}
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise ReloadError(
            f"template {template!r}: only {{model}}, {{version}}, {{path}} may be used ({exc})"
        ) from exc


def server_words(body: bytes, limit: int = 400) -> str:
    """The part of a server's error answer a person needs, on one line.

    JSON answers keep their ``error``/``detail``/``reason`` field; text answers
    (MLServer sends a Python traceback) keep their last line, which names the error.
    """
    import json

    text = body.decode(errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("error", "detail", "reason", "message"):
            if isinstance(doc.get(key), str) and doc[key].strip():
                text = doc[key].strip()
                break
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Triton's reasons put the error first and a traceback after it; tracebacks
    # put it last.
    if lines and lines[0].startswith("Traceback"):
        lines = lines[-1:]
    return " ".join(lines)[:limit]


class ProbeState(StrEnum):
    LOADED = "loaded"  # the server serves this version
    LOADING = "loading"  # it is working on it: ask again
    ABSENT = "absent"  # it answers but does not have this version (not yet, or lost it)
    FAILED = "failed"  # it said it cannot load this version
    UNREACHABLE = "unreachable"  # nothing answers


@dataclass(frozen=True)
class Probe:
    state: ProbeState
    detail: str = ""


class Notifier(Protocol):
    def notify(self, target: ReloadTarget) -> None:
        """Tell the server; raise ServerNotRunning, LoadFailed (the server refused it
        outright, e.g. a synchronous load API) or ReloadError."""
        ...


class Prober(Protocol):
    def probe(self, target: ReloadTarget, timeout: float) -> Probe:
        """Ask the server once, within ``timeout`` seconds, what it does with ``target``."""
        ...
