"""Confirming: ask the server until it has an answer about a version.

Each method is a Prober (one question, one answer: modelsync.reload.Probe);
``wait_loaded`` asks every ``period`` and turns the answers into one of three
outcomes: loaded (returns), failed (LoadFailed, the server's own words), unknown
(LoadUnknown: the timeout passed while it was loading, absent or unreachable).
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from modelsync.cancel import CancelToken
from modelsync.errors import LoadFailed, LoadUnknown, ReloadError, ServerNotRunning
from modelsync.methods import MethodOptions, method_of, parse_options
from modelsync.reload import Probe, Prober, ProbeState, ReloadTarget
from modelsync.units import Duration

__all__ = ["ConfirmConfig", "ask", "build_prober", "probe_timeout", "wait_loaded"]


class ConfirmConfig(MethodOptions):
    """[models.confirm]: the keys every method has; a method's module adds its own
    (methods: the modules here, http, tfserving, exec; built in: none, server)."""

    timeout: Duration = 120.0
    period: Duration = 1.0

    @classmethod
    def of(cls, **raw: Any) -> ConfirmConfig:
        """The options of the method ``raw`` names, validated (ValueError names the key)."""
        return parse_options(__name__, ConfirmConfig, raw)


def ask(
    method: str, url: str, body: bytes | None, timeout: float, cancel: CancelToken
) -> tuple[int, bytes] | Probe:
    """One request of a probe: (status, body), or the Probe that no answer means
    (unreachable when nothing listens, loading when it did not answer in time);
    Cancelled when the pass's token fired."""
    from modelsync.transport.client import server_call  # urllib3 only when a server is asked

    try:
        return server_call(method, url, body, timeout, cancel)
    except ServerNotRunning as exc:
        return Probe(ProbeState.UNREACHABLE, str(exc))
    except ReloadError as exc:
        return Probe(ProbeState.LOADING, str(exc))


def probe_timeout(config: ConfirmConfig) -> float:
    """How long one question may take: a few periods, within 1-10 s."""
    return min(10.0, max(1.0, config.period * 5))


def wait_loaded(
    prober: Prober,
    target: ReloadTarget,
    config: ConfirmConfig,
    cancel: CancelToken,
    *,
    unreachable_ends: bool = False,
) -> None:
    """Return once the server serves ``target``; raise LoadFailed or LoadUnknown.

    ``unreachable_ends``: a server that cannot be reached at all raises
    ServerNotRunning at once instead of being waited for (the caller decides what
    no server means).
    """
    started = time.monotonic()
    deadline = started + config.timeout
    said = False
    while True:
        left = deadline - time.monotonic()
        probe = prober.probe(target, max(0.5, min(probe_timeout(config), left)), cancel)
        if probe.state is ProbeState.LOADED:
            return
        if not said and time.monotonic() - started >= 2.0:
            # A wait of up to confirm.timeout (minutes) must not look like a hang: said
            # once, with what the server answers meanwhile.
            said = True
            structlog.get_logger().info(
                "waiting for the server to confirm the revision",
                model=target.model,
                version=target.version,
                up_to_s=round(max(0.0, deadline - time.monotonic())),
                last=_describe(probe),
            )
        if probe.state is ProbeState.FAILED:
            raise LoadFailed(f"server failed to load version {target.version}: {probe.detail}")
        if probe.state is ProbeState.UNREACHABLE and unreachable_ends:
            raise ServerNotRunning(probe.detail)
        left = deadline - time.monotonic()
        if left <= 0:
            raise LoadUnknown(
                f"version {target.version} not confirmed within {config.timeout:g}s; "
                f"last: {_describe(probe)}"
            )
        cancel.wait(min(config.period, left))


def _describe(probe: Probe) -> str:
    return f"{probe.state.value}: {probe.detail}" if probe.detail else probe.state.value


def build_prober(config: ConfirmConfig) -> Prober | None:
    """The prober of an explicit confirm method; None for ``none``.

    ``server`` (a preset's own) is built by the preset, not here.
    """
    if config.method in (None, "none", "server"):
        return None
    prober: Prober = method_of(__name__, config.method).build(config)
    return prober
