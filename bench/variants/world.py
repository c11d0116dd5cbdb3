"""One trial's world: a bucket on one backend, a store, a config file, the real CLI and
daemon as child processes, and the oracle (tests/oracle.py) to judge what is served.

Nothing here imports modelsync: the campaign drives the product only through its
command line, its daemon, its files and its admin port, so that it keeps working
while the pass is rewritten underneath it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.backends import AzureBackend, Backend, GcsBackend, LocalBackend, S3Backend
from tests.helpers import free_port
from tests.oracle import MANIFEST, SIGNATURE, Policy, check_served, refused_versions

__all__ = [
    "MANIFEST",
    "MODEL",
    "SIGNATURE",
    "Daemon",
    "Endpoints",
    "Run",
    "World",
    "files_for",
    "manifest_for",
    "tree_digest",
]

MODEL = "ranker"
REPO = Path(__file__).resolve().parents[2]


# Children may not take the machine down with them: a read of /dev/zero that nothing
# bounds would otherwise grow until the kernel's OOM killer picks a victim.
MEMORY_LIMIT = 3 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def files_for(rng: random.Random, version: int) -> dict[str, bytes]:
    """A small revision: 2-4 files, one of them nested, contents unique to ``version``."""
    files = {"saved_model.pb": b"graph-%d-" % version + rng.randbytes(rng.randint(1, 300))}
    for i in range(rng.randint(1, 3)):
        files[f"variables/shard-{i}"] = rng.randbytes(rng.randint(0, 2000))
    return files


def manifest_for(files: dict[str, bytes], version: int, model: str = MODEL) -> dict[str, Any]:
    return {
        "format": 1,
        "model": model,
        "version": version,
        "created": "2026-11-01T00:00:00Z",
        "files": [
            {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for p, d in sorted(files.items())
        ],
    }


@dataclass
class Endpoints:
    """The storage API servers of this campaign run (None: that backend is not run)."""

    gs: str | None = None
    s3: str | None = None
    az: str | None = None

    def backend(self, name: str, root: Path, prefix: str) -> Backend:
        if name == "file":
            return LocalBackend(root / "bucket" / MODEL)
        if name == "gs" and self.gs:
            return GcsBackend(self.gs, "campaign", prefix=f"{prefix}/{MODEL}")
        if name == "s3" and self.s3:
            return S3Backend(self.s3, "campaign", prefix=f"{prefix}/{MODEL}")
        if name == "az" and self.az:
            return AzureBackend(self.az, "campaign", prefix=f"{prefix}/{MODEL}")
        raise RuntimeError(f"backend {name} is not running")


@dataclass
class World:
    root: Path
    backend_name: str
    endpoints: Endpoints
    channel: str | None = None
    report: bool = False
    signed: bool = False
    keep: int = 3
    pass_timeout: float = 20.0
    confirm: dict[str, Any] | None = None
    source_endpoint: str | None = None  # a proxy in front of the storage API
    source_options: dict[str, Any] | None = None  # more [models.source_options]
    marker: str | None = None  # complete_marker: revisions without a manifest
    identity: str = "host-a"
    gate: dict[str, float] | None = None
    max_bytes: int | None = None
    refused: set[int] = field(default_factory=set)  # versions the trial knows are hostile
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = self.root / "data" / "models"
        self.state = self.root / "data" / ".modelsync-models"
        self.store.mkdir(parents=True, exist_ok=True)
        self.backend = self.endpoints.backend(self.backend_name, self.root, self.root.name)
        if isinstance(self.backend, LocalBackend):
            self.backend.root.mkdir(parents=True, exist_ok=True)
        self.pubkey = self.root / "key.pub"
        self.pubkey.write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.config = self.root / "modelsync.toml"
        self.notified = self.root / "notified.jsonl"
        self.write_config()

    # -- the publisher's side ---------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self.backend.put(key, data)

    def publish(
        self,
        version: int | str,
        files: dict[str, bytes],
        *,
        doc: dict[str, Any] | None = None,
        raw: bytes | None = None,
        sign: bool | None = None,
    ) -> bytes:
        """Objects first, signature, manifest last; returns the manifest bytes."""
        for name, data in files.items():
            self.put(f"{version}/{name}", data)
        if raw is None:
            raw = json.dumps(doc or manifest_for(files, int(version))).encode()
        if self.signed if sign is None else sign:
            self.put(f"{version}/{SIGNATURE}", self.key.sign(raw))
        self.put(f"{version}/{MANIFEST}", raw)
        return raw

    def pointer(self, doc: dict[str, Any] | bytes, *, sign: bool | None = None) -> None:
        """Write the channel pointer: raw bytes as they are; a document as a signed
        envelope when the model requires signatures (``sign`` overrides), with a fresh
        seq, an expiry an hour away and a deliberate-rollback mark, so that a trial
        about another class can move the channel either way."""
        assert self.channel is not None
        if isinstance(doc, bytes):
            raw = doc
        elif self.signed if sign is None else sign:
            self._seq = max(self._seq + 1, int(time.time() * 1000))
            full = {"seq": self._seq, "expires": int(time.time()) + 3600, **doc}
            full.setdefault("rollback_seq", full["seq"])
            raw = self.envelope(full)
        else:
            raw = json.dumps(doc).encode()
        self.put(f"_channels/{self.channel}.json", raw)

    def envelope(self, doc: dict[str, Any], key: Ed25519PrivateKey | None = None) -> bytes:
        """``doc`` as modelsync's signed pointer (docs/fleet.md): {"signed", "signatures"},
        Ed25519 over the canonical JSON of "signed" (sorted keys, no spaces, ASCII),
        keyid the sha256 of the raw public key. Written here from the documented format,
        not with modelsync's code, so the campaign judges the format too."""
        signer = key or self.key
        signed = {"model": MODEL, "channel": self.channel, **doc}
        payload = json.dumps(
            signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True
        ).encode()
        public = signer.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        signature = {
            "keyid": hashlib.sha256(public).hexdigest(),
            "sig": base64.b64encode(signer.sign(payload)).decode(),
        }
        return json.dumps({"signed": signed, "signatures": [signature]}).encode()

    # -- the host's side ----------------------------------------------------------

    @property
    def model_dir(self) -> Path:
        return self.store / MODEL

    @property
    def cache_dir(self) -> Path:
        return self.state / "revisions" / MODEL

    @property
    def state_file(self) -> Path:
        return self.state / "state" / f"{MODEL}.json"

    def write_config(self, *, interval: str = "1h", admin_port: int | None = None) -> None:
        lines = [
            f'store = "{self.store}"',
            f'state_dir = "{self.state}"',
            f'interval = "{interval}"',
            "jitter = 0",
            f"pass_timeout = {self.pass_timeout}",
            f'identity = "{self.identity}"',
            'log_level = "info"',
        ]
        if admin_port is not None:
            lines += ["[admin]", f'listen = "127.0.0.1:{admin_port}"']
        lines += [
            "[[models]]",
            f'name = "{MODEL}"',
            f'source = "{self.backend.url}"',
            f"keep = {self.keep}",
        ]
        if self.channel:
            lines.append(f'channel = "{self.channel}"')
        if self.report:
            lines.append("report = true")
        if self.max_bytes is not None:
            lines.append(f"max_bytes = {self.max_bytes}")
        if self.gate:
            pairs = ", ".join(f"{json.dumps(k)} = {v}" for k, v in self.gate.items())
            lines.append(f"gate = {{ {pairs} }}")
        if self.marker:
            lines += [f'complete_marker = "{self.marker}"', 'settle = "0s"']
        options = {**self.backend.options(self.source_endpoint), **(self.source_options or {})}
        if options:
            lines.append("[models.source_options]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in options.items()]
        if self.signed:
            lines += [
                "[models.verify]",
                f'public_keys = ["{self.pubkey}"]',
                "require_signature = true",
            ]
        # The server is told through the oracle: what it would load is judged then too,
        # not only after the command (a pass may serve a tree and move on).
        hook = [sys.executable, "-m", "tests.oracle", str(self.store), MODEL, str(self.notified)]
        if self.signed:
            hook.append(str(self.pubkey))
        lines += ["[models.notify]", 'method = "exec"', f"command = {json.dumps(hook)}"]
        if self.confirm:
            lines.append("[models.confirm]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in self.confirm.items()]
        self.config.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env["MODELSYNC_LOG_FORMAT"] = "json"
        env["DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"] = "true"
        backend_env: Callable[[], dict[str, str]] | None = getattr(self.backend, "env", None)
        if backend_env is not None:
            env.update(backend_env())
        return env

    def cli(self, *args: str, timeout: float = 120) -> Run:
        """``modelsync ARGS --config <config>``; a run past ``timeout`` is killed."""
        argv = [sys.executable, "-m", "modelsync", *args, "--config", str(self.config)]
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            env=self.env(),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_limit_memory,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
            hung = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            hung = True
        return Run(
            argv[3:-2],
            -9 if hung else proc.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - started,
            hung,
        )

    def sync(self, timeout: float = 120) -> Run:
        return self.cli("sync", timeout=timeout)

    def active(self) -> int | None:
        try:
            target = os.readlink(self.model_dir / "current")
        except OSError:
            return None
        return int(target) if target.isdigit() else None

    def policy(self) -> Policy:
        keys = [self.key.public_key()] if self.signed else []
        return Policy(MODEL, keys, self.signed)

    def check(self) -> list[str]:
        """The oracle's verdict on the served tree now."""
        refused = self.refused | refused_versions(self.state, MODEL)
        problems = check_served(self.store, self.policy(), refused).violations
        # What the served tree was when the server was told of each activation.
        if self.notified.exists():
            for line in self.notified.read_text().splitlines():
                told = json.loads(line)
                problems += [f"when told of {told['version']}: {v}" for v in told["violations"]]
            self.notified.unlink()
        return problems

    def digest(self, version: int) -> str:
        """A digest of what is served as ``version`` (names, kinds, bytes)."""
        return tree_digest(self.model_dir / str(version))

    def daemon(self, interval: str = "1s") -> Daemon:
        port = free_port()
        self.write_config(interval=interval, admin_port=port)
        return Daemon(self, port)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    if not root.is_dir():
        return "absent"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            h.update(str(path.relative_to(root)).encode())
            if path.is_symlink():
                h.update(b"->" + os.readlink(path).encode())
            elif path.is_file():
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    hung: bool

    def tail(self) -> str:
        return " | ".join(self.stderr.strip().splitlines()[-2:])[-300:]


class Daemon:
    """``modelsync run`` as a child process with its admin port."""

    def __init__(self, world: World, port: int) -> None:
        self.world, self.port = world, port
        self.log = (world.root / "daemon.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelsync", "run", "--config", str(world.config)],
            env=world.env(),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
            preexec_fn=_limit_memory,
        )

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, float]:
        """(status, seconds) of GET ``path`` on the admin port; status 0: no answer."""
        started = time.monotonic()
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=timeout
            ) as r:
                return r.status, time.monotonic() - started
        except urllib.error.HTTPError as exc:
            return exc.code, time.monotonic() - started
        except OSError:
            return 0, time.monotonic() - started

    def wait_up(self, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.get("/healthz", 1)[0]:
                return True
            time.sleep(0.2)
        return False

    def terminate(self, within: float = 5.0) -> tuple[float, int | None]:
        """SIGTERM; (seconds to exit, exit code or None if it had to be killed)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
        if code is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        return took, code

    def slowloris(self, count: int) -> list[socket.socket]:
        """``count`` connections that start a request and never finish it."""
        socks = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
        return socks
