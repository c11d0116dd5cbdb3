"""`modelsync run`: the sync pass on a schedule, for every model.

The main loop owns everything that is not a pass: signals, config reloads, the
systemd handshake and the admin endpoint's requests all arrive as events on one
queue; the loop's sleep is a blocking wait on it, so nothing waits for a poll.
Passes run on a bounded pool (schedule.py, ``parallel_passes``): thousands of models
cost a few threads, and stop and reload stay prompt.
"""

from __future__ import annotations

import functools
import queue
import random
import signal
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from modelsync.admin import AdminServer
from modelsync.channel import default_identity
from modelsync.config import Config, ModelConfig
from modelsync.daemonlock import DaemonLock
from modelsync.errors import ConfigError, ModelsyncError, StoreError
from modelsync.events.push import Push
from modelsync.metrics import Metrics
from modelsync.passes import PassRunner
from modelsync.progress import LoggedProgress
from modelsync.readiness import not_ready
from modelsync.reconfigure import plan
from modelsync.schedule import ModelSlot, Scheduler, summary
from modelsync.sdnotify import SystemdNotifier
from modelsync.servers import notifier_for, prober_for
from modelsync.sources import SourceFactory, backend_for
from modelsync.status import collect_status
from modelsync.sync import Syncer
from modelsync.volume import Store
from modelsync.watch import Watcher
from modelsync.webhooks import MlflowWebhook, read_secret

__all__ = ["Daemon", "DaemonFailed"]

# /healthz fails when the main loop has not turned for this long.
_ALIVE_WITHIN = 30.0
# The main loop turns at least this often (its heartbeat), even with no events.
_LOOP_TICK = 5.0
# Workers get this long to abandon their pass and clean staging on stop.
_STOP_GRACE = 4.0
# A pass still running this long after its deadline (or pass_timeout, if shorter) is
# stuck: /healthz fails.
_STUCK_AFTER = 60.0


class DaemonFailed(ModelsyncError):
    """A model failed ``max_failures`` passes in a row; a supervisor should restart us."""


# What arrives on the main loop's queue, one record per kind: a stop (SIGTERM, SIGINT),
# a reload (by file, signal or admin), passes to start now (POST /sync, bucket events,
# MLflow hooks), a booked pass (readiness and systemd status follow), a model that
# reached max_failures (the loop ends, exit 1).
@dataclass(frozen=True)
class _Stop:
    pass


@dataclass(frozen=True)
class _Reload:
    trigger: str


@dataclass(frozen=True)
class _Sync:
    models: tuple[str, ...]


@dataclass(frozen=True)
class _Passed:
    model: str


@dataclass(frozen=True)
class _Fatal:
    reason: str


_Event = _Stop | _Reload | _Sync | _Passed | _Fatal


class Daemon:
    """Owns the workers, the admin endpoint, the watchers and the systemd handshake."""

    def __init__(
        self,
        load: Callable[[], Config],
        config: Config,
        *,
        registry: CollectorRegistry,
        notifier: SystemdNotifier,
        watch_config: str | None = None,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        sources: SourceFactory | None = None,
    ) -> None:
        self._load = load
        self.config = config
        self.wall = wall
        self.events: queue.Queue[_Event] = queue.Queue()
        self._registry = registry
        self.metrics = Metrics(registry, wall)
        self.metrics.configure(config.interval, {m.name: m.max_age for m in config.models})
        self.notifier = notifier
        self.syncer = Syncer(
            Store(config.store, config.state_path),
            wall_clock=wall,
            sources=sources,
            progress=LoggedProgress(gauge=self.metrics.download_progress),
            identity=config.identity,
        )
        # Bucket events wake a pass through the same road as POST /sync.
        self._push = Push(
            registry, lambda models: self.events.put(_Sync(tuple(models))), self._served, wall
        )
        self.passes = PassRunner(
            self.syncer,
            self.metrics,
            self._push,
            lambda: self.config,
            on_pass=lambda name: self.events.put(_Passed(name)),
            on_fatal=lambda reason: self.events.put(_Fatal(reason)),
            wall=wall,
            rng=rng,
        )
        self._scheduler = Scheduler(self.passes.run, config.parallel_passes)
        self._watch_config = watch_config
        self._watcher = Watcher()
        token = config.admin.token.get_secret_value() if config.admin.token else None
        self.admin = AdminServer(
            config.admin.address, self, registry, token, self._mlflow_webhook(config)
        )
        self._heartbeat = time.monotonic()
        self._ready_sent = False
        self._stopping = threading.Event()
        self._log = structlog.get_logger()

    def _mlflow_webhook(self, config: Config) -> MlflowWebhook | None:
        """MLflow's signed registry deliveries wake the models following the alias."""
        path = config.admin.mlflow_webhook_secret_file
        if path is None:
            return None
        return MlflowWebhook(read_secret(path), lambda: self.config.models, self.request_sync)

    @property
    def metrics_registry(self) -> CollectorRegistry:
        return self._registry

    def worker(self, name: str) -> ModelSlot | None:
        """``name``'s schedule and pass counts (None when it is not configured)."""
        return self._scheduler.get(name)

    # -- the AdminView protocol ---------------------------------------------------

    def alive(self) -> bool:
        """The main loop turns and no worker is stuck far past its pass deadline."""
        now = time.monotonic()
        if now - self._heartbeat >= _ALIVE_WITHIN:
            return False
        limit = self.config.pass_timeout + min(_STUCK_AFTER, self.config.pass_timeout)
        return self._scheduler.alive() and not any(
            s.pass_started is not None and now - s.pass_started > limit
            for s in self._scheduler.slots()
        )

    def not_ready(self) -> list[str]:
        return not_ready(self.config.models, self.syncer.store)

    def degraded(self) -> list[str]:
        return self._push.degraded()

    def _served(self, name: str) -> int | None:
        """The version ``name`` serves (None: none, or no longer configured)."""
        model = next((m for m in self.config.models if m.name == name), None)
        if model is None:
            return None
        try:
            return self.syncer.store.model(name, model.layout).active_version()
        except StoreError:
            return None

    def status(self) -> dict[str, Any]:
        report = collect_status(self.config, self.syncer.store, self.wall())
        report["events"] = [vars(s) for s in self._push.sources()]
        for entry in report["models"]:
            slot = self._scheduler.get(entry["name"])
            if slot is not None:
                entry["last_outcome"] = slot.last.outcome.value if slot.last else None
                entry["consecutive_failures"] = slot.failures
            progress = self._registry.get_sample_value(
                "modelsync_download_progress_bytes", {"model": entry["name"]}
            )
            if progress is not None:
                entry["download_progress_bytes"] = progress
        return report

    def request_sync(self, models: list[str] | None) -> list[str]:
        names = [m.name for m in self.config.models]
        for name in models or []:
            if name not in names:
                raise KeyError(name)
        chosen = models or names
        self.events.put(_Sync(tuple(chosen)))
        return chosen

    # -- control -----------------------------------------------------------------------

    def request_stop(self) -> None:
        self.events.put(_Stop())

    def request_reload(self, trigger: str = "file") -> None:
        self.events.put(_Reload(trigger))

    def run(self, install_signals: bool = True) -> None:
        """Run until stopped (returns) or a model exhausts max_failures (raises)."""
        if install_signals:
            self._install_signals()
        self.syncer.store.prepare()
        lock = DaemonLock(self.config.state_path, self.config.store)
        lock.acquire()
        try:
            self._serve()
        finally:
            lock.release()

    def _serve(self) -> None:
        """Everything the daemon runs, while it holds the store's daemon lock."""
        # First: an event source that cannot be opened is a configuration error (exit
        # 2, one line) before anything else has started.
        self._push.start(self.config, default_identity(self.config.identity))
        self._watcher.start()
        if self._watch_config:
            from pathlib import Path

            self._watcher.watch_config(Path(self._watch_config), self.request_reload)
        keepalive = threading.Thread(
            target=self.notifier.keepalive,
            args=(self._stopping, lambda: self._heartbeat),
            name="watchdog",
            daemon=True,
        )
        keepalive.start()
        for model in self.config.models:
            self._start_worker(model)
        self._scheduler.start()
        # Only now: /healthz answered 503 while the watches and the scheduler were
        # still being set up (seconds with many file:// models on a busy machine).
        self.admin.start()
        self._log.info(
            "daemon started",
            models=[m.name for m in self.config.models],
            admin=self.config.admin.listen,
            interval_s=self.config.interval,
        )
        for model in self.config.models:
            if notifier_for(model) is None and prober_for(model) is None:
                # Nothing will be told or asked: say so once, never claim a confirmation.
                self._log.warning(
                    "no server is told about new revisions and none confirms them "
                    "(set server, or [models.notify] / [models.confirm]); the server "
                    "must watch the directory itself",
                    model=model.name,
                )
            self._warn_unbound(model)
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
            match event:
                case None:
                    continue
                case _Stop():
                    self._log.info("stopping")
                    return None
                case _Fatal(reason):
                    self._log.error("giving up", reason=reason)
                    return reason
                case _Reload(trigger):
                    self._reload(trigger)
                case _Sync(models):
                    for name in models:
                        self._scheduler.trigger(name)
                case _Passed():
                    self._after_pass()

    def _supervise(self) -> None:
        """Restart the scheduler thread if it ended (it never should)."""
        if not self._scheduler.alive() and not self._stopping.is_set():
            self._log.error("scheduler thread ended; restarting it")
            self._scheduler.start()

    def _after_pass(self) -> None:
        slots = self._scheduler.slots()
        status = summary(slots)
        if not self._ready_sent and all(s.passes for s in slots):
            self._ready_sent = True
            self.notifier.ready(status)
            self._log.info("first pass done; ready", status=status)
        else:
            self.notifier.status(status)

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
        self._scheduler.add(ModelSlot(model))
        # Backends with change events (file://) start a pass when a revision lands.
        root = backend_for(model.source).watch_root(model.source)
        if root is not None:
            self._watcher.watch_tree(
                model.name, root, functools.partial(self._scheduler.trigger, model.name)
            )

    def _stop_worker(self, name: str) -> None:
        # No wait: the pass in flight, if any, sees its stop event and ends by itself.
        self._scheduler.remove(name)
        self._watcher.unwatch(name)
        self.metrics.forget(name)

    def _reload(self, trigger: str) -> None:
        try:
            new = self._load()
        except Exception as exc:
            # Whatever the file holds, a reload runs on the main loop and must never
            # end the daemon: the running configuration stays (ConfigError is the
            # expected case).
            self._log.error(
                "config reload failed; keeping the running configuration",
                error=str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}",
                trigger=trigger,
            )
            return
        steps = plan(self.config, new)
        if steps.refused is not None:
            self._log.error(steps.refused)
            return
        new = new.model_copy(update={"admin": self.config.admin})
        try:
            # Before anything switches: the new event sources are all opened, or the
            # running ones (and the running configuration) stay.
            self._push.reload(new, default_identity(new.identity))
        except ConfigError as exc:
            self._log.error(
                "config reload failed; keeping the running configuration",
                error=str(exc),
                trigger=trigger,
            )
            return
        if steps.admin_changed:
            self._log.warning("admin settings change on restart only")
        self.config = new
        self.metrics.configure(
            self.config.interval, {m.name: m.max_age for m in self.config.models}
        )
        for name in steps.removed:
            self._log.info("model removed from config; its files stay", model=name)
            self._stop_worker(name)
        for model in steps.added:
            self._log.info("model added", model=model.name)
            self._start_worker(model)
        for model in steps.restarted:
            self._stop_worker(model.name)
            self._start_worker(model)
        for model in steps.updated:
            slot = self._scheduler.get(model.name)
            if slot is not None:
                slot.model = model
        for model in steps.verify_changed:
            self._warn_unbound(model)
        for name in steps.triggered:
            self._scheduler.trigger(name)
        self._log.info("config reloaded", models=steps.triggered, trigger=trigger)

    def _warn_unbound(self, model: ModelConfig) -> None:
        """Say once (at start-up, or when a reload changes it) that the model's OMS
        signatures do not bind the version: the opt-out weakens what they protect."""
        warning = model.verify.oms_unbound_warning()
        if warning is not None:
            self._log.warning(warning, model=model.name)

    def _shutdown(self) -> None:
        self._stopping.set()
        self.notifier.stopping()
        self._push.stop()
        self._scheduler.stop(_STOP_GRACE)
        self._watcher.stop()
        self.admin.stop()
        self.syncer.close()
        self._log.info("stopped")
