"""The seam between modelsync and the serving process: tell it, then hear it back.

Notifiers (modelsync/notify/) tell the server that the revision changed; probers
(modelsync/confirm/ and the server presets in modelsync/servers/) ask it, once,
what it does with a version. ``confirm.wait_loaded`` turns repeated probes into one
of three outcomes: loaded (returns), failed (LoadFailed: the server said so, with
its own words), unknown (LoadUnknown: timeout, unreachable).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from modelsync.cancel import CancelToken
from modelsync.children import ChildTimedOut, run_child
from modelsync.errors import ReloadError, ServerNotRunning

__all__ = [
    "CommandFailed",
    "Notifier",
    "Probe",
    "ProbeState",
    "Prober",
    "ReloadTarget",
    "ServerNotRunning",
    "child_env",
    "parse_json",
    "redact_url",
    "render",
    "run_command",
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
            f"template {redact_url(template)!r}: only {{model}}, {{version}}, {{path}} may be "
            f"used ({exc})"
        ) from exc


# Never handed to the commands modelsync runs (notify, confirm and validate exec).
_SECRET_VARIABLES = frozenset({"MODELSYNC_ADMIN_TOKEN"})


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a command modelsync runs: its own, less its secrets, plus ``extra``."""
    return {
        **{k: v for k, v in os.environ.items() if k not in _SECRET_VARIABLES},
        **extra,
    }


class CommandFailed(ReloadError):
    """The command ran and exited non-zero."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


def run_command(
    argv: tuple[str, ...], target: ReloadTarget, timeout: float, cancel: CancelToken
) -> None:
    """Run ``argv``; ReloadError with its last stderr line unless it exits 0 in time,
    Cancelled (the command stopped) when the pass's token fires first."""
    try:
        done = run_child(argv, child_env(target.env()), timeout, cancel)
    except FileNotFoundError as exc:
        raise ReloadError(f"command not found: {argv[0]}") from exc
    except ChildTimedOut as exc:
        raise ReloadError(f"{argv[0]} did not finish within {timeout:g}s; killed") from exc
    except OSError as exc:
        raise ReloadError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        last = done.last_words(300) or "(no output)"
        raise CommandFailed(f"{argv[0]} exited {done.returncode}: {last}", done.returncode)


def redact_url(url: str) -> str:
    """``url`` without its user:password part, for logs, errors and status."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def parse_json(body: bytes | str) -> Any:
    """JSON from a server or a file, or ValueError, also for documents nested beyond
    what the parser can take (RecursionError)."""
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def server_words(body: bytes, limit: int = 400) -> str:
    """The part of a server's error answer a person needs, on one line.

    JSON answers keep their ``error``/``detail``/``reason`` field; text answers
    (MLServer sends a Python traceback) keep their last line, which names the error.
    """
    text = body.decode(errors="replace").strip()
    try:
        doc = parse_json(text)
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
    def notify(self, target: ReloadTarget, cancel: CancelToken) -> None:
        """Tell the server, within the pass's ``cancel``; raise ServerNotRunning,
        LoadFailed (the server refused it outright, e.g. a synchronous load API),
        ReloadError, or Cancelled."""
        ...


class Prober(Protocol):
    def probe(self, target: ReloadTarget, timeout: float, cancel: CancelToken) -> Probe:
        """Ask the server once, within ``timeout`` seconds and the pass's ``cancel``,
        what it does with ``target``; Cancelled when the token fired."""
        ...
