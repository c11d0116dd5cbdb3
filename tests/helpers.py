"""Shared test helpers: build revisions, run the real CLI, check the store's invariants."""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from modelsync.admitted import Admitted
from modelsync.manifest import MANIFEST_NAME, Manifest, parse_version, verify_dir
from modelsync.retry import RetryPolicy
from modelsync.store import ModelStore

REPO = Path(__file__).resolve().parent.parent


# Drawn from the system's entropy: the global generator may be reseeded by a test
# (hypothesis does), and two workers would then draw the same ports.
_PICK = random.SystemRandom()
# Every port this process handed out: a child may not have bound its port yet when the
# next one is drawn, and "nothing listens on it right now" does not see that. Twenty
# daemons drawn from one worker's ~11,000 ports share one about once in sixty fleets
# (test_fleet lost a host to it in CI: the loser exits, its admin port taken).
_GIVEN: set[int] = set()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, for a child process
    to bind later, chosen below the kernel's ephemeral range: a port the kernel
    handed out (bind to port 0) is handed out again to the next outgoing connection,
    and with 20 daemons talking to an emulator one of them took a port reserved for
    the 19th daemon's admin server before it could bind it (test_fleet, once).

    Under ``pytest -n`` each worker draws from its own slice of the range: a port
    one worker checked and released cannot be taken by the other before its child
    binds it. A port is handed out once per process."""
    low, high = _port_range()
    for _ in range(100):
        port = _PICK.randrange(low, high)
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    raise RuntimeError(f"no free port between {low} and {high}")


def _port_range() -> tuple[int, int]:
    low, high = 10_000, _ephemeral_low()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... under -n
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return low, high
    width = (high - low) // count
    start = low + int(worker[2:]) * width
    return start, start + width


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    return max(low, 11_000)


def sidecar_flags(store: Path, source: str | Path, model: str = "ranker") -> list[str]:
    """--store/--model/--source for one model configured by flags alone (as a sidecar);
    a Path ``source`` is a local bucket directory."""
    url = f"file://{source}" if isinstance(source, Path) else source
    return ["--store", str(store), "--model", model, "--source", url]


def tfserver_argv(store: Path, port: int, *extra: str) -> list[str]:
    """The command line of examples/tfserver serving model 'ranker' from ``store``."""
    return [
        sys.executable,
        "-m",
        "examples.tfserver.server",
        "--store",
        str(store),
        "--model",
        "ranker",
        "--port",
        str(port),
        *extra,
    ]


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Create ``root`` holding ``files`` (relative path -> bytes)."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def model_files(seed: int, size: int = 4096, shared: bytes = b"shared-index") -> dict[str, bytes]:
    """A SavedModel-shaped file set whose weights depend on ``seed``."""
    block = hashlib.sha256(str(seed).encode()).digest()
    return {
        "saved_model.pb": b"graph-" + str(seed).encode(),
        "variables/variables.index": shared,
        "variables/variables.data-00000-of-00001": (block * (size // len(block) + 1))[:size],
    }


def manifest_doc(
    files: dict[str, bytes], model: str = "ranker", version: int = 1
) -> dict[str, object]:
    """A manifest document (as JSON data) describing ``files``."""
    return {
        "format": 1,
        "model": model,
        "version": version,
        "created": datetime(2026, 11, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": [
            {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for p, d in sorted(files.items())
        ],
    }


def put_revision(
    bucket_model: Path,
    version: int,
    files: dict[str, bytes],
    *,
    manifest: bool = True,
    model: str = "ranker",
) -> Path:
    """Lay out a revision straight in a local bucket, as a publisher would."""
    root = write_tree(bucket_model / str(version), files)
    if manifest:
        doc = manifest_doc(files, model, version)
        (root / MANIFEST_NAME).write_bytes(json.dumps(doc).encode())
    return root


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``modelsync`` command in a child process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "modelsync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
        check=False,
    )


def publish_local(tmp_path: Path, bucket: Path, version: int, *extra: str) -> str:
    """`modelsync publish` of model_files(version) to file://bucket; the version printed."""
    src = write_tree(tmp_path / f"src{version}", model_files(version))
    out = run_cli("publish", str(src), f"file://{bucket}", "--version", str(version), *extra)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with what it is (bytes digest, link target, dir)."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@dataclass
class StoreView:
    active: int | None
    served: list[int]
    violations: list[str]


def check_invariants(store: Path, model: str) -> StoreView:
    """DESIGN.md invariant 1: only complete, verified revisions (and ``current``) under
    ``<store>/<model>/``; ``current`` is a relative link to one of them."""
    model_dir = store / model
    violations: list[str] = []
    served: list[int] = []
    active: int | None = None
    if not model_dir.exists():
        return StoreView(None, [], [])
    for entry in sorted(os.listdir(model_dir)):
        path = model_dir / entry
        if entry == "current":
            target = os.readlink(path) if path.is_symlink() else None
            if target is None or parse_version(target) is None:
                violations.append(f"current is not a relative link to a version: {target!r}")
            elif not (model_dir / target).is_dir():
                violations.append(f"current points at missing {target}")
            else:
                active = int(target)
            continue
        version = parse_version(entry)
        if version is None or not path.is_dir() or path.is_symlink():
            violations.append(f"unexpected entry {entry!r} in {model_dir}")
            continue
        served.append(version)
        try:
            manifest = Manifest.parse((path / MANIFEST_NAME).read_bytes(), str(path))
        except Exception as exc:
            violations.append(f"{entry}: manifest unreadable: {exc}")
            continue
        problems = verify_dir(path, manifest)
        violations.extend(f"{entry}: {p}" for p in problems)
    if served and active is None:
        violations.append(f"versions {served} served but no valid current")
    return StoreView(active, served, violations)


# Retries for tests on local servers: quick, and enough for an emulator's hiccups.
FAST_RETRY = RetryPolicy(attempts=12, initial=0.01, maximum=0.2, total=120)


def admitted(ms: ModelStore, version: int, tree: Path) -> Admitted:
    """``tree`` through admission as ``version`` of ``ms``'s model (its only way in)."""
    import structlog

    from modelsync.cancel import CancelToken
    from modelsync.config import ModelConfig
    from modelsync.outcome import Outcome, PassResult
    from modelsync.sync.admit import DOWNLOAD, admit
    from modelsync.sync.context import PassContext

    model = ModelConfig(name=ms.name, source="file:///nowhere")
    result = PassResult(ms.name, Outcome.FAILED, None)
    ctx = PassContext(
        model,
        ms,
        ms.load_state(),
        CancelToken(),
        result,
        structlog.get_logger(),
        lambda: 0.0,
        RetryPolicy(),
    )
    return admit(ctx, version, tree, DOWNLOAD)  # a tree staged by the test, as fetched


def service_account_file(path: Path, token_uri: str) -> Path:
    """A Google service-account key file (a fresh RSA key) whose tokens come from
    ``token_uri``: Application Default Credentials pointed at a local server."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    info = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "1",
        "private_key": pem.decode(),
        "client_email": "sync@p.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return path


def bind_unix_socket(path: Path) -> None:
    """Leave a Unix socket file at ``path`` (a kind of file someone could plant)."""
    sock = socket.socket(socket.AF_UNIX)
    # bind() takes at most 108 bytes of path, and pytest's can be longer: bind relative
    # to the directory.
    cwd = Path.cwd()
    os.chdir(path.parent)
    try:
        sock.bind(path.name)
    finally:
        os.chdir(cwd)
        sock.close()  # the socket file stays


def thread_wakeups(name: str) -> int:
    """How many times this process's thread named ``name`` has gone to sleep and been
    woken (its voluntary context switches): what an idle thread must not add to."""
    (thread,) = [t for t in threading.enumerate() if t.name == name]
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return next(int(x.split()[1]) for x in status.splitlines() if x.startswith("voluntary_"))
