"""The daemon's side of bucket events: the hub and its runners, started, stopped and
restarted on a config reload as one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from modelsync.cancel import CancelToken
from modelsync.errors import ConfigError
from modelsync.events import KINDS, EventsConfig
from modelsync.events.hub import EventHub, EventMetrics, SourceHealth
from modelsync.events.match import Matcher
from modelsync.events.runner import SourceRunner

if TYPE_CHECKING:
    from modelsync.config import Config

__all__ = ["Push"]

# A runner gets this long to leave a long poll on stop before its queue is cleaned up.
_STOP_GRACE = 1.0
# Stopping the sources (leaving the polls, cleaning up the queues) ends within this.
_STOP_LIMIT = 3.0


class Push:
    """``wake(models)`` asks the daemon for passes; ``served(model)`` is the version it
    serves (None: none)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        wake: Callable[[list[str]], None],
        served: Callable[[str], int | None],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = EventMetrics(registry)
        self._wake = wake
        self._served = served
        self._wall = wall
        self._hub: EventHub | None = None
        self._runners: list[SourceRunner] = []
        self._config: Config | None = None

    def start(self, config: Config, identity: str) -> None:
        """Read ``config``'s event sources (none: nothing runs); ConfigError when one
        cannot be opened, and then none runs."""
        hub, opened = self._build(config, identity)
        self._switch(config, hub, opened)

    def reload(self, config: Config, identity: str) -> None:
        """Restart the sources when ``[[events]]`` changed; otherwise match the new
        models against the running ones. ConfigError when a new source cannot be
        opened: then the running sources, and what they match against, stay."""
        old = self._config
        if old is not None and old.events == config.events:
            # The queues stay: a per-host queue deleted and created again is refused by
            # SQS for a minute. Only what the events are matched against changes.
            self._config = config
            if self._hub is not None:
                self._hub.set_matcher(Matcher(list(config.models)))
            return
        # All of the new sources are opened before any running one stops: a reload
        # is all or nothing.
        hub, opened = self._build(config, identity)
        self.stop()
        self._switch(config, hub, opened)

    def _build(self, config: Config, identity: str) -> tuple[EventHub | None, list[SourceRunner]]:
        if not config.events:
            return None, []
        hub = EventHub(
            Matcher(list(config.models)), self._wake, self._served, self._metrics, self._wall
        )
        return hub, runners(config.events, hub, identity)

    def _switch(self, config: Config, hub: EventHub | None, opened: list[SourceRunner]) -> None:
        self._config = config
        self._hub = hub
        self._runners = opened
        for runner in opened:
            runner.start()

    def stop(self) -> None:
        # One deadline for every source's clean-up, so SIGTERM (or a reload) waits
        # _STOP_LIMIT at most however many sources there are.
        until = CancelToken(deadline=time.monotonic() + _STOP_LIMIT)
        for runner in self._runners:
            runner.halt()
        for runner in self._runners:
            runner.stop(_STOP_GRACE, until)
        self._runners = []
        self._hub = None

    def pass_started(self, model: str) -> None:
        if self._hub is not None:
            self._hub.pass_started(model)

    def degraded(self) -> list[str]:
        return self._hub.degraded() if self._hub is not None else []

    def sources(self) -> list[SourceHealth]:
        return self._hub.sources() if self._hub is not None else []


def runners(configs: tuple[EventsConfig, ...], hub: EventHub, identity: str) -> list[SourceRunner]:
    """A runner per configured source, registered with ``hub`` (not started);
    ConfigError naming the source when one cannot be opened (a profile that does not
    exist, a connection string that does not parse), the others closed again."""
    out: list[SourceRunner] = []
    for config in configs:
        kind = KINDS[config.kind]()
        try:
            source = kind.open(kind.options.model_validate(config.options), identity)
        except Exception as exc:
            # The SDKs raise their own types for what is a configuration error here.
            for runner in out:
                runner.close()
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ConfigError(
                f"events {config.name}: cannot open: {type(exc).__name__}: {first}"
            ) from exc
        out.append(SourceRunner(config.name, source, kind.parse, config.models, hub))
    # Registered only once all opened: a refused reload leaves the metrics untouched.
    for config in configs:
        hub.add_source(SourceHealth(config.name, config.kind, config.models))
    return out
