"""`modelsync run`: the sync pass on a schedule, one worker thread per model.

The main loop owns everything that is not a pass: signals, config reloads, the
systemd handshake and the admin endpoint's requests all arrive as events on one
queue; the loop's sleep is a blocking wait on it, so nothing waits for a poll.
Each model's worker sleeps on its own wake event: one model's slow download never
delays another's schedule.
"""

from __future__ import annotations

import queue
import random
import signal
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog
from prometheus_client import CollectorRegistry

from modelsync.admin import AdminServer
from modelsync.cancel import CancelToken
from modelsync.config import Config, ModelConfig
from modelsync.errors import ConfigError, ModelsyncError, StoreError
from modelsync.metrics import Metrics
from modelsync.sdnotify import Notifier
from modelsync.sources import Source, open_source
from modelsync.status import collect_status
from modelsync.store import Store
from modelsync.syncer import Outcome, PassResult, Syncer
from modelsync.watch import Watcher

__all__ = ["Daemon", "DaemonFailed"]

# A failed pass is retried after 2 s, 4 s, 8 s ... up to the interval.
_BACKOFF_START = 2.0
# /healthz fails when the main loop has not turned for this long.
_ALIVE_WITHIN = 30.0
# The main loop turns at least this often (its heartbeat), even with no events.
_LOOP_TICK = 5.0
# Workers get this long to abandon their pass and clean staging on stop.
_STOP_GRACE = 4.0
# A pass still running this long after its deadline is stuck: /healthz fails.
_STUCK_AFTER = 60.0
# The least time between the end of one pass of a model and the start of the next.
_MIN_PASS_GAP = 2.0


class DaemonFailed(ModelsyncError):
    """A model failed ``max_failures`` passes in a row; a supervisor should restart us."""


@dataclass
class _Event:
    kind: str  # "stop" | "reload" | "sync" | "fatal" | "pass"
    models: list[str] | None = None
    message: str = ""


class _Worker(threading.Thread):
    """Runs one model's passes: at start, then every interval, sooner after a failure."""

    def __init__(self, daemon: Daemon, model: ModelConfig) -> None:
        super().__init__(name=f"model-{model.name}", daemon=True)
        self.daemon_ref = daemon
        self.model = model
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self.failures = 0
        # Passes in a row that asked to be retried soon without failing (the server
        # has not confirmed yet, or is not reachable): they back off like failures.
        self.waiting = 0
        self.passes = 0
        self.last: PassResult | None = None
        self.stale = False
        # When the running pass started (monotonic), None between passes: a pass far
        # past its deadline is a stuck worker, which /healthz reports.
        self.pass_started: float | None = None

    def run(self) -> None:
        ended = -_MIN_PASS_GAP
        while not self.stop_event.is_set():
            # Triggers (POST /sync, file events) that come faster than this coalesce
            # into one pass: a flood of them costs a listing every few seconds at most.
            gap = _MIN_PASS_GAP - (time.monotonic() - ended)
            if gap > 0 and self.stop_event.wait(gap):
                return
            self.wake.clear()
            self.pass_started = time.monotonic()
            try:
                self._one_pass()
            except Exception:
                # The pass itself never raises (Syncer.sync); this is the bookkeeping
                # around it. The worker lives on and counts the failure.
                self.failures += 1
                structlog.get_logger().bind(model=self.model.name).exception(
                    "model worker error; counted as a failed pass"
                )
            finally:
                self.pass_started = None
                ended = time.monotonic()
            if self.stop_event.is_set():
                return
            self.wake.wait(self.daemon_ref.next_delay(max(self.failures, self.waiting)))

    def _one_pass(self) -> None:
        d = self.daemon_ref
        model = self.model
        cancel = CancelToken(self.stop_event, time.monotonic() + d.config.pass_timeout)
        result = d.syncer.sync(model, cancel)
        if self.stop_event.is_set() and result.outcome is Outcome.FAILED:
            return  # abandoned on purpose: not a failure of the model
        log = structlog.get_logger().bind(model=model.name, version=result.active)
        ms = d.syncer.store.model(model.name, model.layout)
        try:
            rollback_failed = ms.load_state().rollback_failed
        except StoreError:
            rollback_failed = False  # the pass failed on it already and says so
        if result.ok and not rollback_failed:
            if self.failures:
                log.info("recovered", after_failures=self.failures)
            self.failures = 0
        elif not result.ok:
            self.failures += 1
        self.waiting = self.waiting + 1 if result.retry_soon else 0
        created = self._created(result.active)
        age = None if created is None else d.wall() - created
        self.stale = bool(model.max_age is not None and age is not None and age > model.max_age)
        if self.stale:
            log.warning("active revision is stale", age_s=round(age or 0), max_age_s=model.max_age)
        d.metrics.record(
            result,
            created,
            self.failures,
            self.stale,
            rollback_failed=rollback_failed,
        )
        self.last = result
        self.passes += 1
        d.events.put(_Event("pass", [model.name]))
        if d.config.max_failures is not None and self.failures >= d.config.max_failures:
            d.events.put(
                _Event(
                    "fatal",
                    message=(
                        f"model {model.name} failed {self.failures} passes in a row "
                        f"(max_failures); last error: {result.error}"
                    ),
                )
            )

    def _created(self, version: int | None) -> float | None:
        if version is None:
            return None
        ms = self.daemon_ref.syncer.store.model(self.model.name, self.model.layout)
        manifest = ms.manifest_of(version)
        return manifest.created.timestamp() if manifest else None


class Daemon:
    """Owns the workers, the admin endpoint, the watchers and the systemd handshake."""

    def __init__(
        self,
        load: Callable[[], Config],
        config: Config,
        *,
        registry: CollectorRegistry,
        notifier: Notifier,
        watch_config: str | None = None,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        sources: Callable[[str], Source] = open_source,
    ) -> None:
        self._load = load
        self.config = config
        self.wall = wall
        self._rng = rng or random.Random()  # noqa: S311 - schedule jitter, not secrets
        self.events: queue.Queue[_Event] = queue.Queue()
        self._registry = registry
        self.metrics = Metrics(registry, wall)
        self.notifier = notifier
        self.syncer = Syncer(
            Store(config.store, config.state_path), wall_clock=wall, sources=sources
        )
        self._workers: dict[str, _Worker] = {}
        self._watch_config = watch_config
        self._watcher = Watcher()
        token = config.admin.token.get_secret_value() if config.admin.token else None
        self.admin = AdminServer(config.admin.address, self, registry, token)
        self._heartbeat = time.monotonic()
        self._ready_sent = False
        self._stopping = threading.Event()
        self._log = structlog.get_logger()

    @property
    def metrics_registry(self) -> CollectorRegistry:
        return self._registry

    def worker(self, name: str) -> _Worker | None:
        """The thread running ``name``'s passes (None when it has none)."""
        return self._workers.get(name)

    # -- scheduling --------------------------------------------------------------

    def next_delay(self, failures: int) -> float:
        interval = self.config.interval
        if failures:
            base: float = min(interval, _BACKOFF_START * 2.0 ** (failures - 1))
            return base * self._rng.uniform(0.8, 1.2)
        return interval * (1 + self._rng.uniform(-self.config.jitter, self.config.jitter))

    # -- the AdminView protocol ---------------------------------------------------

    def alive(self) -> bool:
        """The main loop turns and no worker is stuck far past its pass deadline."""
        now = time.monotonic()
        if now - self._heartbeat >= _ALIVE_WITHIN:
            return False
        limit = self.config.pass_timeout + _STUCK_AFTER
        return not any(
            w.pass_started is not None and now - w.pass_started > limit
            for w in list(self._workers.values())
        )

    def not_ready(self) -> list[str]:
        reasons = []
        for model in self.config.models:
            ms = self.syncer.store.model(model.name, model.layout)
            try:
                state = ms.load_state()
            except StoreError as exc:
                reasons.append(f"{model.name}: {exc}")
                continue
            if ms.active_version() is None:
                reasons.append(f"{model.name}: no active version")
            elif state.rollback_failed:
                reasons.append(f"{model.name}: previous version failed to confirm after rollback")
            elif state.server_reason is not None:
                reasons.append(f"{model.name}: the server does not serve the active version")
        return reasons

    def status(self) -> dict[str, Any]:
        report = collect_status(self.config, self.syncer.store, self.wall())
        for entry in report["models"]:
            worker = self._workers.get(entry["name"])
            if worker is not None:
                entry["last_outcome"] = worker.last.outcome.value if worker.last else None
                entry["consecutive_failures"] = worker.failures
        return report

    def request_sync(self, models: list[str] | None) -> list[str]:
        names = [m.name for m in self.config.models]
        for name in models or []:
            if name not in names:
                raise KeyError(name)
        chosen = models or names
        self.events.put(_Event("sync", chosen))
        return chosen

    # -- control -----------------------------------------------------------------------

    def request_stop(self) -> None:
        self.events.put(_Event("stop"))

    def request_reload(self, trigger: str = "file") -> None:
        self.events.put(_Event("reload", message=trigger))

    def run(self, install_signals: bool = True) -> None:
        """Run until stopped (returns) or a model exhausts max_failures (raises)."""
        if install_signals:
            self._install_signals()
        self.syncer.store.prepare()
        self.admin.start()
        self._watcher.start()
        if self._watch_config:
            from pathlib import Path

            self._watcher.watch_config(Path(self._watch_config), self.request_reload)
        keepalive = threading.Thread(target=self._keepalive, name="watchdog", daemon=True)
        keepalive.start()
        for model in self.config.models:
            self._start_worker(model)
        self._log.info(
            "daemon started",
            models=[m.name for m in self.config.models],
            admin=self.config.admin.listen,
            interval_s=self.config.interval,
        )
        failure: str | None = None
        try:
            failure = self._loop()
        finally:
            self._shutdown()
        if failure:
            raise DaemonFailed(failure)

    def _loop(self) -> str | None:
        while True:
            try:
                event = self.events.get(timeout=_LOOP_TICK)
            except queue.Empty:
                event = None
            self._heartbeat = time.monotonic()
            self._supervise()
            if event is None:
                continue
            if event.kind == "stop":
                self._log.info("stopping")
                return None
            if event.kind == "fatal":
                self._log.error("giving up", reason=event.message)
                return event.message
            if event.kind == "reload":
                self._reload(event.message)
            elif event.kind == "sync":
                for name in event.models or []:
                    worker = self._workers.get(name)
                    if worker is not None:
                        worker.wake.set()
            elif event.kind == "pass":
                self._after_pass()

    def _supervise(self) -> None:
        """Restart a model worker whose thread ended (it never should)."""
        for name, worker in list(self._workers.items()):
            if worker.is_alive() or worker.stop_event.is_set():
                continue
            self._log.error("model worker ended; restarting it", model=name)
            failures = worker.failures
            self._stop_worker(name)
            self._start_worker(worker.model)
            self._workers[name].failures = failures

    def _after_pass(self) -> None:
        summary = "; ".join(
            f"{name}: v{w.last.active if w.last and w.last.active else '-'}"
            f" {w.last.outcome.value if w.last else 'pending'}"
            for name, w in sorted(self._workers.items())
        )
        if not self._ready_sent and all(w.passes for w in self._workers.values()):
            self._ready_sent = True
            self.notifier.ready(summary)
            self._log.info("first pass done; ready", status=summary)
        else:
            self.notifier.status(summary)

    def _keepalive(self) -> None:
        """WATCHDOG=1 at a third of systemd's period while the main loop turns."""
        period = self.notifier.watchdog_interval
        if period is None:
            return
        while not self._stopping.wait(period / 3):
            if time.monotonic() - self._heartbeat < period:
                self.notifier.watchdog()

    def _install_signals(self) -> None:
        def on_stop(_signum: int, _frame: types.FrameType | None) -> None:
            self.request_stop()

        def on_hup(_signum: int, _frame: types.FrameType | None) -> None:
            self.request_reload("signal")

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    # -- workers and reloads ------------------------------------------------------------

    def _start_worker(self, model: ModelConfig) -> None:
        worker = _Worker(self, model)
        self._workers[model.name] = worker
        worker.start()
        if model.source.startswith("file://"):
            from pathlib import Path

            root = Path(unquote(urlsplit(model.source).path))
            self._watcher.watch_tree(model.name, root, worker.wake.set)

    def _stop_worker(self, name: str) -> None:
        worker = self._workers.pop(name)
        worker.stop_event.set()
        worker.wake.set()
        self._watcher.unwatch(name)
        worker.join(_STOP_GRACE)
        self.metrics.forget(name)

    def _reload(self, trigger: str) -> None:
        try:
            new = self._load()
        except ConfigError as exc:
            self._log.error(
                "config reload failed; keeping the running configuration",
                error=str(exc),
                trigger=trigger,
            )
            return
        if (new.store, new.state_path) != (self.config.store, self.config.state_path):
            self._log.error(
                "config reload refused: store and state_dir cannot change while "
                "running; restart modelsync to apply"
            )
            return
        if new.admin != self.config.admin:
            self._log.warning("admin settings change on restart only")
        old = {m.name: m for m in self.config.models}
        fresh = {m.name: m for m in new.models}
        self.config = new.model_copy(update={"admin": self.config.admin})
        for name in sorted(set(old) - set(fresh)):
            self._log.info("model removed from config; its files stay", model=name)
            self._stop_worker(name)
        for name, model in sorted(fresh.items()):
            if name not in old:
                self._log.info("model added", model=name)
                self._start_worker(model)
            elif model != old[name]:
                if model.source != old[name].source:
                    self._stop_worker(name)
                    self._start_worker(model)
                else:
                    self._workers[name].model = model
            self._workers[name].wake.set()
        self._log.info("config reloaded", models=sorted(fresh), trigger=trigger)

    def _shutdown(self) -> None:
        self._stopping.set()
        self.notifier.stopping()
        for worker in self._workers.values():
            worker.stop_event.set()
            worker.wake.set()
        deadline = time.monotonic() + _STOP_GRACE
        for worker in self._workers.values():
            worker.join(max(0.0, deadline - time.monotonic()))
        self._watcher.stop()
        self.admin.stop()
        self.syncer.close()
        self._log.info("stopped")
