"""mlflow+http://host:5000/<model>[@<alias>]: a version named by MLflow's Model Registry.

The registry only names the version; the bytes come from the artifact store through
modelsync's own backends (s3, gs, az, file) and pass the same checks as any revision.
An idle pass costs one registry request: ``registered-models/alias`` for
``<model>@<alias>``, ``registered-models/get-latest-versions`` for ``<model>``.

A registered version's artifact location (its ``source``) must be a modelsync
revision directory ``<store>/<version>`` (``modelsync publish --mlflow`` registers
exactly that) under one of the model's ``allowed_stores``; ``<version>`` is the
revision the host serves. The registry answer is untrusted: it is size-capped,
parsed into strict models, and a location outside the allowed stores is refused,
so whoever can move an alias can choose among revisions in the allowed stores,
never point the host at bytes elsewhere.

A channel on top of an alias: with ``channel_store`` (a store URL under an allowed
store, e.g. ``s3://ml-artifacts/ranker``), the channel pointer and the reports live
in that store, read and written through its own backend; the alias is the channel's
stable version (modelsync.sync.policy.follow) and the pointer may add a canary, a
revision of that store.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from modelsync.cancel import CancelToken
from modelsync.errors import (
    AccessDeniedError,
    NotFoundError,
    PublishError,
    SourceError,
    TransientSourceError,
)
from modelsync.manifest import parse_version
from modelsync.sources.base import Backend, Connections, ObjectInfo, Sink, Source
from modelsync.sources.control import Control, Unchanged

__all__ = ["BACKEND", "MAX_ANSWER_BYTES", "MlflowOptions", "MlflowSource", "parse_mlflow_url"]

# A registry answer for one model version is a few hundred bytes; more is refused.
MAX_ANSWER_BYTES = 64 * 1024
# Artifact stores opened by one source (one per distinct <store>): bounded, so a
# registry that names a new store every poll cannot grow the process.
_MAX_STORES = 16
# MLflow allows wider names; this set keeps the URL, the query and the logs plain.
_URL = re.compile(
    r"^mlflow\+(?P<scheme>https?)://(?P<host>[A-Za-z0-9.\-\[\]:]+)(?P<root>(/[A-Za-z0-9._~-]+)*?)"
    r"/(?P<model>[A-Za-z0-9][A-Za-z0-9._-]{0,255})(@(?P<alias>[A-Za-z0-9_-]{1,255}))?$"
)


class MlflowOptions(BaseModel):
    """``[models.source_options]`` of an ``mlflow+http(s)://`` source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Artifact locations the registry may name, as URL prefixes (s3://bucket/models,
    # file:///srv/models/ranker); anything else is refused.
    allowed_stores: tuple[str, ...] = Field(min_length=1, max_length=16)
    # The artifact store backend's own options (endpoint, region...).
    store_options: dict[str, Any] = Field(default_factory=dict)
    # Seconds for one registry request.
    timeout: float = Field(default=30.0, gt=0, le=600)
    # The store URL that holds the model's channel pointer and reports (`release` and
    # `publish` use it as --source): needed for ``channel`` or ``report``.
    channel_store: str | None = Field(default=None, max_length=2048)

    @field_validator("allowed_stores")
    @classmethod
    def _stores_are_backends(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from modelsync.sources import backend_for

        normal = []
        for url in value:
            if url.startswith("mlflow+"):
                raise ValueError(f"{url!r} is a registry, not an artifact store")
            normal.append(backend_for(url).parse(url).rstrip("/"))
        return tuple(normal)

    @field_validator("channel_store")
    @classmethod
    def _channel_store_is_allowed(cls, value: str | None, info: ValidationInfo) -> str | None:
        from modelsync.sources import backend_for

        if value is None:
            return None
        store = backend_for(value).parse(value).rstrip("/")
        allowed = info.data.get("allowed_stores", ())
        if not any(store == a or store.startswith(a + "/") for a in allowed):
            raise ValueError(f"{store!r} is not under one of allowed_stores")
        return store


class _ModelVersion(BaseModel):
    """The fields of MLflow's ModelVersion that are used; the rest is ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    name: str = Field(max_length=256)
    version: str = Field(pattern=r"^[1-9][0-9]{0,18}$")
    source: str = Field(min_length=1, max_length=2048)
    status: Literal["READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"] = "READY"


class _AliasAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)
    model_version: _ModelVersion


class _LatestAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)
    model_versions: list[_ModelVersion] = Field(default_factory=list, max_length=64)


def parse_mlflow_url(url: str) -> tuple[str, str, str | None]:
    """(the registry's http(s) base URL, with the environment's credentials in it for
    the HTTP client to send as a header; the registered model; the alias or None);
    ValueError naming the form, never quoting a password."""
    from modelsync.reload import redact_url

    if "@" in urlsplit(url).netloc:
        # The source URL is shown on /status, the status page and in every log line
        # about the model: a password in it would be everywhere.
        raise ValueError(
            f"mlflow source {redact_url(url)!r}: credentials do not go in the URL (it is "
            "shown in status and logs); set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD in the environment, as MLflow's own client reads them"
        )
    match = _URL.match(url.rstrip("/"))
    if match is None:
        raise ValueError(
            f"mlflow source {url[:200]!r}: use mlflow+http://host:port/<model>[@<alias>] "
            "(model: letters, digits, . _ -)"
        )
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    # transport.HttpClient turns user:password@ into a Basic Authorization header and
    # takes it out of the URL before anything can log it.
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
    base = f"{match['scheme']}://{auth}{match['host']}{match['root'] or ''}"
    return base, match["model"], match["alias"]


class _MlflowBackend(Backend):
    name = "mlflow"
    schemes = ("mlflow+http", "mlflow+https")
    example = "mlflow+http://host:5000/model@alias"
    options = MlflowOptions

    def holds_control(self, options: BaseModel) -> bool:
        assert isinstance(options, MlflowOptions)
        return options.channel_store is not None

    def parse(self, url: str) -> str:
        parse_mlflow_url(url)
        return url.rstrip("/")

    def open(self, url: str, options: BaseModel, connections: Connections | None) -> Source:
        assert isinstance(options, MlflowOptions)
        return MlflowSource(url, options, connections)


BACKEND = _MlflowBackend()


class MlflowSource:
    """The revision a registry alias (or the latest version) names, read from its store.

    ``named_version`` asks the registry; the object calls that follow go to the
    artifact store of the version it named (a version it never named is NotFound).
    """

    def __init__(self, url: str, options: MlflowOptions, connections: Connections | None) -> None:
        self.url = url
        self._api, self.registered_model, self.alias = parse_mlflow_url(url)
        self._options = options
        self._connections = connections or Connections()
        self._own_connections = connections is None
        self._lock = threading.Lock()
        self._stores: dict[str, Source] = {}
        self._named: dict[int, str] = {}  # modelsync version -> its store URL
        # The registry's own version number of the last answer, for logs and status.
        self.registry_version: int | None = None

    # -- the registry -----------------------------------------------------------

    def named_version(self, cancel: CancelToken | None = None) -> int | None:
        """The revision the registry names now (None: the model has no ready version).

        NotFoundError when the model or alias does not exist, SourceError (one line)
        for an answer that is malformed or names a store outside ``allowed_stores``,
        TransientSourceError for what is worth retrying."""
        model = quote(self.registered_model, safe="")
        if self.alias is not None:
            path = f"registered-models/alias?name={model}&alias={quote(self.alias, safe='')}"
            answer = self._get(path, _AliasAnswer, cancel)
            assert isinstance(answer, _AliasAnswer)
            named = answer.model_version
            chosen: _ModelVersion | None = named if named.status == "READY" else None
        else:
            answer = self._get(
                f"registered-models/get-latest-versions?name={model}", _LatestAnswer, cancel
            )
            assert isinstance(answer, _LatestAnswer)
            ready = [v for v in answer.model_versions if v.status == "READY"]
            chosen = max(ready, key=lambda v: int(v.version), default=None)
        if chosen is None:
            return None
        if chosen.name != self.registered_model:
            raise SourceError(f"{self.url}: the registry answered for model {chosen.name[:100]!r}")
        store, version = self._locate(chosen)
        with self._lock:
            self._named[version] = store
            self.registry_version = int(chosen.version)
        return version

    def _locate(self, chosen: _ModelVersion) -> tuple[str, int]:
        """The allowed store and the revision that a version's artifact location names."""
        where = f"{self.url}: registry version {chosen.version}"
        location = chosen.source.rstrip("/")
        # A backend may decode %-escapes (file://), so an escaped ".." could leave the
        # store after the prefix check: modelsync's own locations never need escapes.
        segments = f"{location}/".split("://", 1)[-1].split("/")
        if any(c in location for c in "\x00\r\n\\?#%") or {".", ".."} & set(segments):
            raise SourceError(f"{where}: refused artifact location {location[:200]!r}")
        store, _, last = location.rpartition("/")
        if not any(store == a or store.startswith(a + "/") for a in self._options.allowed_stores):
            raise SourceError(
                f"{where}: artifact location {location[:200]!r} is outside allowed_stores "
                f"({', '.join(self._options.allowed_stores)}); refused"
            )
        version = parse_version(last)
        if version is None:
            raise SourceError(
                f"{where}: artifact location {location[:200]!r} is not a modelsync revision "
                "(<store>/<version>: register it with `modelsync publish --mlflow`)"
            )
        return store, version

    def _get(self, path: str, shape: type[BaseModel], cancel: CancelToken | None) -> BaseModel:
        from modelsync.transport import HttpClient, HttpFailure

        what = f"{self.url}: registry"
        try:
            answer = HttpClient.shared().request(
                "GET",
                f"{self._api}/api/2.0/mlflow/{path}",
                None,
                self._options.timeout,
                cancel,
                limit=MAX_ANSWER_BYTES + 1,
            )
        except HttpFailure as exc:
            raise TransientSourceError(f"{what}: {exc}") from exc
        status, body = answer.status, answer.body
        if len(body) > MAX_ANSWER_BYTES:
            raise SourceError(f"{what}: answer over {MAX_ANSWER_BYTES} bytes; refused")
        if status != 200:
            code = _error_code(body)
            if status == 404 or code == "RESOURCE_DOES_NOT_EXIST":
                raise NotFoundError(f"{what}: {_not_found(self.registered_model, self.alias)}")
            if status in (401, 403):
                raise AccessDeniedError(f"{what}: HTTP {status} (credentials or permissions)")
            error = TransientSourceError if status == 429 or status >= 500 else SourceError
            raise error(f"{what}: HTTP {status} {code}".rstrip())
        try:
            return shape.model_validate(json.loads(body))
        except RecursionError:
            raise SourceError(f"{what}: answer nested too deep; refused") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            raise SourceError(f"{what}: malformed answer at {key}: {err['msg']}; refused") from None
        except ValueError as exc:
            raise SourceError(f"{what}: answer is not JSON ({str(exc)[:100]}); refused") from None

    # -- the artifact store of a named version ------------------------------------------

    def _store(self, version: int) -> Source:
        from modelsync.sources import open_source

        with self._lock:
            # A version the registry never named is read from the channel store only
            # (a canary the channel pointer names): never from anywhere else.
            url = self._named.get(version, self._options.channel_store)
            if url is None:
                raise NotFoundError(f"{self.url}: version {version} is not one the registry named")
            if url not in self._stores:
                if len(self._stores) >= _MAX_STORES:
                    oldest = next(iter(self._stores))
                    self._stores.pop(oldest).close()
                self._stores[url] = open_source(url, self._options.store_options, self._connections)
            return self._stores[url]

    def list_versions(self, cancel: CancelToken | None = None) -> list[int]:
        named = self.named_version(cancel)
        return [] if named is None else [named]

    def read_object(
        self, version: int, name: str, limit: int, cancel: CancelToken | None = None
    ) -> bytes | None:
        return self._store(version).read_object(version, name, limit, cancel)

    def list_objects(self, version: int, cancel: CancelToken | None = None) -> list[ObjectInfo]:
        return self._store(version).list_objects(version, cancel)

    def fetch(self, version: int, name: str, sink: Sink, cancel: CancelToken) -> None:
        self._store(version).fetch(version, name, sink, cancel)

    def upload(self, version: int, name: str, path: Path, *, exclusive: bool = False) -> None:
        raise PublishError(
            f"{self.url}: a registry holds no files; publish to the artifact store with "
            "`modelsync publish --source <store> --mlflow <registry URL>`"
        )

    # The channel pointer and reports live in ``channel_store``, through its backend.
    def _control(self) -> Source:
        from modelsync.sources import open_source

        url = self._options.channel_store
        if url is None:
            raise PublishError(
                f"{self.url}: a registry source holds no channel pointers or reports "
                "without source_options.channel_store"
            )
        with self._lock:
            if url not in self._stores:
                self._stores[url] = open_source(url, self._options.store_options, self._connections)
            return self._stores[url]

    def get_control(
        self, key: str, limit: int, tag: str | None = None, cancel: CancelToken | None = None
    ) -> Control | Unchanged | None:
        if self._options.channel_store is None:
            return None
        return self._control().get_control(key, limit, tag, cancel)

    def put_control(self, key: str, data: bytes, *, match: str | None = None) -> str:
        return self._control().put_control(key, data, match=match)

    def list_control(self, prefix: str, cancel: CancelToken | None = None) -> dict[str, str]:
        if self._options.channel_store is None:
            return {}
        return self._control().list_control(prefix, cancel)

    def close(self) -> None:
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()
        if self._own_connections:
            self._connections.close()


def _error_code(body: bytes) -> str:
    """MLflow's ``error_code`` from an error answer, if it is one (else "")."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    code = doc.get("error_code") if isinstance(doc, dict) else None
    return code if isinstance(code, str) and re.fullmatch(r"[A-Z_]{1,64}", code) else ""


def _not_found(model: str, alias: str | None) -> str:
    if alias is None:
        return f"registered model {model!r} does not exist"
    return f"registered model {model!r} or its alias {alias!r} does not exist"
