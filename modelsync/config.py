"""Configuration: a TOML file, overridden by MODELSYNC_* variables and flags, validated once.

Every error names the key and where it came from (the file, or the flag/variable)
in one line, so an operator can fix it without reading a traceback.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from modelsync.bakeconfig import BakeConfig
from modelsync.checkconfig import ValidateConfig, VerifyConfig
from modelsync.configbase import Strict
from modelsync.configerrors import first_error
from modelsync.confirm import ConfirmConfig
from modelsync.errors import ConfigError, ManifestError, StoreError
from modelsync.events import EventsConfig
from modelsync.foreign import number_like
from modelsync.fsutil import file_kind, read_regular
from modelsync.gates import GatesConfig
from modelsync.manifest import check_relpath
from modelsync.notify import NotifyConfig
from modelsync.smoke import SmokeConfig
from modelsync.sources import backend_for, check_source
from modelsync.store import CURRENT, Layout
from modelsync.suggest import schemeless_url_hint
from modelsync.units import Duration, Size

__all__ = [
    "AdminConfig",
    "Config",
    "ConfirmConfig",
    "ModelConfig",
    "NotifyConfig",
    "default_state_dir",
    "load_config",
]


class ModelConfig(Strict):
    """One model to keep in sync."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    source: str
    # The source backend's own settings (endpoint, region, range size...): each
    # backend module in modelsync/backends/ declares and validates its keys.
    source_options: dict[str, Any] = Field(default_factory=dict)
    keep: int = Field(default=2, ge=1, le=100)
    max_bytes: Size | None = None
    concurrency: int = Field(default=8, ge=1, le=64)
    # Files in flight at once when they are small (latency, not bandwidth, bounds them).
    small_concurrency: int = Field(default=32, ge=1, le=256)
    # For producers that write no manifest (e.g. a TFX Pusher): a revision is complete
    # once this object exists and nothing under it changed for ``settle``.
    complete_marker: str | None = None
    settle: Duration = 120.0
    # An active revision older than this (by its manifest's creation time) is stale.
    max_age: Duration | None = None
    # Minimum manifest metrics, e.g. {"ndcg@10" = 0.30}: a revision missing one or
    # below it is refused before download.
    gate: dict[str, float] = Field(default_factory=dict)
    # [models.gates]: rules against production and a baseline revision (modelsync.gates).
    gates: GatesConfig = GatesConfig()
    # [models.notify] / [models.confirm]: keys of the method named (modelsync/notify/,
    # modelsync/confirm/: each method's module owns its options).
    notify: NotifyConfig = NotifyConfig()
    confirm: ConfirmConfig = ConfirmConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    verify: VerifyConfig = VerifyConfig()
    # [models.smoke]: a revision's smoke requests after the load (modelsync.smoke).
    smoke: SmokeConfig = SmokeConfig()
    # The server beside modelsync (modelsync/servers/): how it is told, asked, and
    # what layout it needs. server_url: its HTTP endpoint (default: its usual port).
    server: str = "custom"
    server_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    server_options: dict[str, Any] = Field(default_factory=dict)
    # <store>/<model>/current; None: as the server preset wants (custom: yes).
    current_link: bool | None = None
    # Files a revision carries that the server reads at <store>/<model>/ (Triton's
    # config.pbtxt); None: the preset's.
    model_files: tuple[str, ...] | None = None
    # A revision the server gave no verdict on (timeout, unreachable) is rolled back
    # and tried again; after this many such attempts it is refused.
    unknown_attempts: int = Field(default=2, ge=1, le=100)
    # Follow <source>/_channels/<channel>.json (modelsync.channel) instead of the
    # newest complete version; report = write each activation outcome to the bucket
    # (<source>/_reports/<version>/<identity>.json, modelsync.reports).
    channel: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    report: bool = False
    # A source with no revision at all is an error (a typo'd prefix looks just like
    # it) unless the model is marked as waiting for its first revision.
    allow_empty: bool = False
    # [models.bake]: after a confirmed activation, judge the revision on the server's
    # own metrics for a window before it counts (modelsync.bakeconfig, bakejudge).
    bake: BakeConfig | None = None

    @model_validator(mode="after")
    def _source_options(self) -> ModelConfig:
        check_source(self.source, self.source_options)  # ValueError names the key
        backend = backend_for(self.source)
        options = backend.options.model_validate(self.source_options)
        if (self.channel is not None or self.report) and not backend.holds_control(options):
            raise ValueError(
                f"channel/report: a {backend.name} source holds no channel pointers or "
                "reports; use the bucket URL of its store (mlflow: set channel_store)"
            )
        return self

    @model_validator(mode="after")
    def _server_preset(self) -> ModelConfig:
        from modelsync.servers import get_preset, preset_names

        try:
            preset = get_preset(self.server)
        except KeyError:
            raise ValueError(
                f"server: unknown server {self.server!r}; one of " + ", ".join(preset_names())
            ) from None
        try:
            preset.options(self.server_options)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            raise ValueError(f"server_options.{key}: {msg}") from exc
        if self.server == "custom" and "server" in (self.notify.method, self.confirm.method):
            raise ValueError("method 'server' needs a server preset (server = \"triton\", ...)")
        if self.smoke.required and self.smoke.url is None and self.server == "custom":
            raise ValueError("smoke.required: a custom server needs smoke.url (where to send them)")
        for name in self.model_files or ():
            try:
                check_relpath(name, "model_files")
            except ManifestError as exc:
                raise ValueError(str(exc)) from exc
            # Nor a name a server could read as a version ("09", " 9"): it would be
            # loaded as one (modelsync.foreign.number_like).
            if "/" in name or number_like(name) or name == CURRENT:
                raise ValueError(f"model_files: {name!r} must be a plain file name")
        return self

    @model_validator(mode="after")
    def _bake_metrics(self) -> ModelConfig:
        if self.bake is None:
            return self
        if self.keep < 2:
            raise ValueError(
                "bake: needs keep >= 2 (the previous revision is kept for the verdict)"
            )
        from modelsync.servers import get_preset

        endpoint = get_preset(self.server).metrics(self)
        if endpoint is None and (self.bake.metrics_url is None or self.bake.series is None):
            raise ValueError(
                f"bake: server {self.server!r} has no known metrics; set bake.metrics_url "
                "and [models.bake.series]"
            )
        return self

    # -- what the server preset decides unless set here ------------------------

    @property
    def confirm_timeout(self) -> float:
        return self.confirm.timeout

    @property
    def notify_method(self) -> str:
        if self.notify.method is not None:
            return self.notify.method
        return "none" if self.server == "custom" else "server"

    @property
    def confirm_method(self) -> str:
        if self.confirm.method is not None:
            return self.confirm.method
        return "none" if self.server == "custom" else "server"

    @property
    def layout(self) -> Layout:
        """What the server needs in <store>/<model>/ (modelsync.store)."""
        from modelsync.servers import get_preset

        preset = get_preset(self.server)
        link = self.current_link if self.current_link is not None else preset.current_link
        files = self.model_files if self.model_files is not None else preset.model_files
        return Layout(link_current=link, model_files=files, exclusive=preset.exclusive)

    @field_validator("notify", mode="before")
    @classmethod
    def _notify_method(cls, raw: Any) -> Any:
        return NotifyConfig.of(**raw) if isinstance(raw, Mapping) else raw

    @field_validator("confirm", mode="before")
    @classmethod
    def _confirm_method(cls, raw: Any) -> Any:
        return ConfirmConfig.of(**raw) if isinstance(raw, Mapping) else raw

    @field_validator("complete_marker")
    @classmethod
    def _marker_is_a_relative_path(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_relpath(value, "complete_marker")
            except ManifestError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @field_validator("source")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if any(c in unquote(value) for c in "\x00\r\n"):
            raise ValueError(f"source {value!r} contains a NUL or line break")
        hint = schemeless_url_hint(value)
        if hint is not None:
            raise ValueError(hint)
        return backend_for(value).parse(value)  # the backend's own URL rules


class AdminConfig(Strict):
    """The daemon's HTTP endpoint: health, readiness, metrics, status, sync trigger."""

    listen: str = Field(default="127.0.0.1:8686", pattern=r"^\[?[0-9A-Za-z.:-]*\]?:[0-9]{1,5}$")
    # When set, POST /sync needs "Authorization: Bearer <token>".
    token: SecretStr | None = None
    # The secret of MLflow registry webhooks (one line in this file): when set, POST
    # /webhooks/mlflow takes signed deliveries (modelsync.webhooks).
    mlflow_webhook_secret_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _port_in_range(cls, value: str) -> str:
        port = int(value.rpartition(":")[2])
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is not between 1 and 65535")
        return value

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - ":8686" means all


class Config(Strict):
    """The whole configuration of one modelsync process."""

    store: Path
    state_dir: Path | None = None
    interval: Duration = 600.0
    # Each model's next pass is interval ± this fraction, so a fleet does not poll in step.
    jitter: float = Field(default=0.1, ge=0.0, le=0.5)
    pass_timeout: Duration = 1800.0
    # Passes of different models run at once by `run` (one pass per model at a time).
    parallel_passes: int = Field(default=8, ge=1, le=256)
    # Consecutive failed passes of one model after which `run` exits 1; None: never.
    max_failures: int | None = Field(default=None, ge=1)
    # This host's name in channel cohorts and reports; default MODELSYNC_IDENTITY, else
    # the host (pod) name.
    identity: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    log_level: str = Field(default="info", pattern="^(debug|info|warning|error)$")
    admin: AdminConfig = AdminConfig()
    models: tuple[ModelConfig, ...] = ()
    # [[events]]: bucket notifications that wake a pass early (modelsync.events).
    events: tuple[EventsConfig, ...] = ()

    @model_validator(mode="after")
    def _events_name_models(self) -> Config:
        known = {m.name: m for m in self.models}
        for i, source in enumerate(self.events):
            for name in source.models:
                if name not in known:
                    raise ValueError(f"events[{i}].models: no model named {name!r}")
                if known[name].source.startswith("file:"):
                    raise ValueError(
                        f"events[{i}].models: {name!r} reads a file:// source, which "
                        "wakes a pass by itself (file events)"
                    )
        return self

    @model_validator(mode="after")
    def _check(self) -> Config:
        if not self.store.is_absolute():
            raise ValueError(f"store must be an absolute path, got {str(self.store)!r}")
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model {dupes[0]!r} is configured twice")
        if self.interval <= 0 or self.pass_timeout <= 0:
            raise ValueError("interval and pass_timeout must be positive")
        if self.store.parent == self.store:
            raise ValueError("store cannot be the root directory: use e.g. /data/models")
        if self.state_dir is not None and (
            self.state_dir.is_relative_to(self.store) or self.store.is_relative_to(self.state_dir)
        ):
            raise ValueError(
                f"state_dir {self.state_dir} overlaps the served tree {self.store}, which "
                f"servers scan: put it beside it, e.g. {default_state_dir(self.store)}"
            )
        return self

    @property
    def state_path(self) -> Path:
        return self.state_dir if self.state_dir is not None else default_state_dir(self.store)

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise ConfigError(f"no model named {name!r} in the configuration")


def default_state_dir(store: Path) -> Path:
    """Beside the served tree, never in it: servers that scan ``store`` must not see it,
    and it must share the filesystem so that renames into ``store`` are atomic."""
    return store.parent / f".modelsync-{store.name}"


# A config file is a few KiB; anything near this is a mistake or an attack, and is
# refused before it is read (a reload must never exhaust memory or block).
CONFIG_LIMIT = 1 << 20


def _read_toml(path: Path) -> dict[str, Any]:
    """The config file's tables. Read as every file someone else could plant is
    (fsutil.read_regular: a regular file within a size limit, never a FIFO or a device
    that would block or flood the daemon's main loop on a reload); its links are
    followed, as a Kubernetes ConfigMap mounts it through ``..data/`` links."""
    try:
        # For the operator's message only: read_regular below is what enforces it.
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"config {path}: is {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > CONFIG_LIMIT:
            raise ConfigError(f"config {path}: larger than {CONFIG_LIMIT >> 20} MiB")
        data = read_regular(path, CONFIG_LIMIT, follow_links=True)
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read config file: {exc.strerror or exc}") from exc
    except StoreError as exc:
        # Replaced or grown between the look above and the read (or a link loop).
        raise ConfigError(f"config {path}: cannot read config file: {exc}") from exc
    try:
        return tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except RecursionError:
        # tomllib recurses per nesting level: 1 MiB of "[[[[..." is within the limit.
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from None


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read ``path`` (or nothing), apply flag/environment ``overrides``, validate once.

    ``overrides`` keys: top-level keys (``store``, ``interval``...) plus ``model``,
    ``source`` and ``keep``. A ``source`` defines (or redirects) the single model
    named by ``model``, as a sidecar configured by flags alone does.
    """
    raw: dict[str, Any] = _read_toml(path) if path is not None else {}
    origin = str(path) if path is not None else "flags/environment"
    over = {k: v for k, v in (overrides or {}).items() if v is not None}
    model_name, source, keep = (
        over.pop("model", None),
        over.pop("source", None),
        over.pop("keep", None),
    )
    for key in ("listen", "token"):
        if key in over:
            admin = raw.get("admin")
            raw["admin"] = {**(admin if isinstance(admin, dict) else {}), key: over.pop(key)}
    raw.update(over)
    if source is not None or keep is not None:
        if model_name is None:
            raise ConfigError(f"{origin}: --source/--keep need --model NAME (MODELSYNC_MODEL)")
        models = [dict(m) for m in raw.get("models", []) if isinstance(m, dict)]
        match = [m for m in models if m.get("name") == model_name]
        entry = match[0] if match else {"name": model_name}
        if source is not None:
            entry["source"] = source
        if keep is not None:
            entry["keep"] = keep
        raw["models"] = models if match else [*models, entry]
    if isinstance(raw.get("models"), dict):
        raise ConfigError(
            f"{origin}: models: [models] is one table; write [[models]] (two brackets) "
            "above each model's keys"
        )
    if "store" not in raw:
        if path is None:
            raise ConfigError(
                "no configuration: give --config FILE (or MODELSYNC_CONFIG=FILE), or "
                "--store, --model and --source (MODELSYNC_STORE, MODELSYNC_MODEL, "
                "MODELSYNC_SOURCE) for one model"
            )
        raise ConfigError(
            f"{origin}: store: missing (set it in the file, --store or MODELSYNC_STORE)"
        )
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise first_error(exc, origin, Config) from exc
    if not config.models:
        raise ConfigError(
            f"{origin}: models: no model configured (add [[models]] with name and source "
            "to the file given by --config or MODELSYNC_CONFIG, or give --model and --source)"
        )
    if model_name is not None:
        config.model(model_name)
    return config
