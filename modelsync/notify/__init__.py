"""Notifiers: signal, http, exec (and none, for servers that watch the directory).

Server presets bring their own (modelsync/servers/); see servers.notifier_for.
"""

from __future__ import annotations

from modelsync.config import NotifyConfig
from modelsync.reload import Notifier, ReloadTarget

__all__ = ["NoNotify", "build_notifier"]


class NoNotify:
    """The server watches the directory itself (TF Serving, Triton in poll mode)."""

    def notify(self, target: ReloadTarget) -> None:
        return None


def build_notifier(config: NotifyConfig) -> Notifier:
    if config.method == "signal":
        from modelsync.notify.signal import SignalNotifier

        return SignalNotifier(config)
    if config.method == "http":
        from modelsync.notify.http import HttpNotifier

        return HttpNotifier(config)
    if config.method == "exec":
        from modelsync.notify.exec import ExecNotifier

        return ExecNotifier(config)
    if config.method == "server":
        raise ValueError("method 'server' is built by the server preset (servers.notifier_for)")
    return NoNotify()
