"""The seam between modelsync and the serving process: tell it, then hear it back.

Notifiers (modelsync/notify/) tell the server that ``current`` changed; confirmers
(modelsync/confirm/) wait until it serves the version. Both raise ReloadError with
the server's own reason; a notifier raises ServerNotRunning when there is no
server to tell (no process, connection refused), which the first activation of a
model tolerates: the server loads ``current`` when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelsync.cancel import CancelToken
from modelsync.errors import ReloadError

__all__ = ["Confirmer", "Notifier", "ReloadTarget", "ServerNotRunning", "render"]


class ServerNotRunning(ReloadError):
    """There is no serving process to tell (yet)."""


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


class Notifier(Protocol):
    def notify(self, target: ReloadTarget) -> None:
        """Tell the server; raise ServerNotRunning or ReloadError."""
        ...


class Confirmer(Protocol):
    def confirm(self, target: ReloadTarget, cancel: CancelToken) -> None:
        """Return once the server serves ``target``; raise ReloadError on failure or timeout."""
        ...
