"""Signal the serving process, found by pidfile or by command line (shared PID namespace)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from pydantic import model_validator

from modelsync.cancel import CancelToken
from modelsync.errors import ReloadError, StoreError
from modelsync.fsutil import read_regular
from modelsync.methods import Method
from modelsync.notify import NotifyConfig
from modelsync.reload import ReloadTarget, ServerNotRunning

__all__ = ["METHOD", "SignalNotifier", "SignalOptions", "find_processes"]


# A PID is a few digits; a larger pidfile is not one.
_PIDFILE_LIMIT = 4096


class SignalOptions(NotifyConfig):
    """method = "signal": a signal to the server, found by pidfile or command line."""

    signal: str = "SIGHUP"
    pidfile: Path | None = None
    # A regular expression matched against each process's command line (/proc/*/cmdline).
    process: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> SignalOptions:
        if self.pidfile is None and self.process is None:
            raise ValueError("method 'signal' needs pidfile or process")
        if self.signal not in signal.Signals.__members__:
            raise ValueError(f"unknown signal {self.signal!r}")
        if self.process is not None:
            try:
                re.compile(self.process)
            except re.error as exc:
                raise ValueError(f"process is not a regular expression: {exc}") from exc
        return self


def find_processes(pattern: str, proc: Path = Path("/proc")) -> list[int]:
    """PIDs whose command line (arguments joined by spaces) matches ``pattern``."""
    regex = re.compile(pattern)
    me = os.getpid()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        text = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        if text and regex.search(text):
            found.append(int(entry.name))
    return sorted(found)


class SignalNotifier:
    def __init__(self, config: SignalOptions) -> None:
        self._signal = signal.Signals[config.signal]
        self._pidfile = config.pidfile
        self._process = config.process

    def _pids(self) -> list[int]:
        if self._pidfile is not None:
            try:
                # The configured path's links are followed (a shared volume may link
                # it); what it ends at must be a small regular file, never a FIFO.
                raw = read_regular(self._pidfile.resolve(), _PIDFILE_LIMIT)
                text = raw.decode(errors="replace").strip()
            except FileNotFoundError as exc:
                raise ServerNotRunning(f"pidfile {self._pidfile} does not exist") from exc
            except StoreError as exc:
                raise ReloadError(f"cannot read pidfile: {exc}") from exc
            except OSError as exc:
                raise ReloadError(f"cannot read pidfile {self._pidfile}: {exc.strerror}") from exc
            if not text.isdigit():
                raise ReloadError(f"pidfile {self._pidfile} holds {text[:40]!r}, not a PID")
            return [int(text)]
        assert self._process is not None
        pids = find_processes(self._process)
        if not pids:
            raise ServerNotRunning(f"no process matches {self._process!r}")
        if len(pids) > 1:
            # Signalling every match once hit an unrelated process with a similar name.
            raise ReloadError(
                f"process pattern {self._process!r} matches {len(pids)} processes "
                f"({', '.join(map(str, pids[:5]))}); make it match the server's only"
            )
        return pids

    def notify(self, target: ReloadTarget, cancel: CancelToken) -> None:
        for pid in self._pids():
            try:
                os.kill(pid, self._signal)
            except ProcessLookupError as exc:
                raise ServerNotRunning(f"process {pid} does not exist") from exc
            except PermissionError as exc:
                raise ReloadError(
                    f"not allowed to signal process {pid} (run as the server's user, or share "
                    "its PID namespace)"
                ) from exc


METHOD = Method(SignalOptions, SignalNotifier)
