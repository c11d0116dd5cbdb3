"""Notifiers: how the serving process is told that a new revision is in place.

Each method is a module here (signal, http, exec) that owns its options (a
NotifyConfig subclass) and builds its Notifier; ``none`` (servers that watch the
directory) and ``server`` (the preset's own way, modelsync/servers/) are built in.
See modelsync.methods.
"""

from __future__ import annotations

from typing import Any

from modelsync.cancel import CancelToken
from modelsync.methods import MethodOptions, method_of, parse_options
from modelsync.reload import Notifier, ReloadTarget
from modelsync.units import Duration

__all__ = ["NoNotify", "NotifyConfig", "build_notifier"]


class NotifyConfig(MethodOptions):
    """[models.notify]: the keys every method has; a method's module adds its own."""

    timeout: Duration = 10.0

    @classmethod
    def of(cls, **raw: Any) -> NotifyConfig:
        """The options of the method ``raw`` names, validated (ValueError names the key)."""
        return parse_options(__name__, NotifyConfig, raw)


class NoNotify:
    """The server watches the directory itself (TF Serving, Triton in poll mode)."""

    def notify(self, target: ReloadTarget, cancel: CancelToken) -> None:
        return None


def build_notifier(config: NotifyConfig) -> Notifier:
    if config.method == "server":
        raise ValueError("method 'server' is built by the server preset (servers.notifier_for)")
    if config.method in (None, "none"):
        return NoNotify()
    notifier: Notifier = method_of(__name__, config.method).build(config)
    return notifier
