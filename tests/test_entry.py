"""The console script starts fast: what `--version` and a no-op `sync` import.

Not a timing test (timings depend on the machine); the modules a command imports
are what decide its start-up, and they are checked here in the real child process,
through ``python -X importtime`` (every module the interpreter loaded, on stderr).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from modelsync.manifest import MANIFEST_NAME
from tests.backends import S3_ENV, S3Backend
from tests.helpers import manifest_doc, model_files, put_revision, run_cli, sidecar_flags

# Storage SDKs and TensorFlow: each costs 0.1-1 s to import; a command that does not
# use them must not load them.
_SDKS = ("google.cloud.storage", "boto3", "botocore", "azure", "tensorflow")


def _imported(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``modelsync ARGS`` under -X importtime; its result and every module it loaded."""
    result = run_cli(*args, env={**(env or {}), "PYTHONPROFILEIMPORTTIME": "1"})
    modules = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", result.stderr, re.M))
    return result, modules


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_version_answers_without_the_command_line_parser() -> None:
    """`--version` prints click's version line but imports no parser, no pydantic, no SDK."""
    result, modules = _imported("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "modelsync, version 0.1.0\n"
    assert "modelsync.entry" in modules
    assert _loaded(modules, ("click", "pydantic", "structlog", "modelsync.cli", *_SDKS)) == []


def test_version_line_is_the_one_click_prints() -> None:
    """The fast path's answer equals what the full command line would print."""
    full = subprocess.run(
        [sys.executable, "-c", "from modelsync.cli import main; main(['--version'])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    fast = run_cli("--version")
    assert full.returncode == fast.returncode == 0
    assert full.stdout == fast.stdout


def test_other_flags_still_reach_the_command_line() -> None:
    """Anything but a lone --version goes to click: --help lists the lazy `release` group."""
    result = run_cli("--help")
    assert result.returncode == 0
    assert re.search(r"^\s+release\s", result.stdout, re.M)
    assert re.search(r"^\s+sync\s", result.stdout, re.M)
    release = run_cli("release", "--help")
    assert release.returncode == 0
    assert "canary" in release.stdout
    late = run_cli("--log-level", "debug", "--version")
    assert (late.returncode, late.stdout) == (0, "modelsync, version 0.1.0\n")


def test_noop_file_sync_imports_no_sdk_and_no_channel_code(tmp_path: Path) -> None:
    """A no-op sync of a file:// model loads no SDK, no channel or release code."""
    bucket = tmp_path / "bucket" / "ranker"
    put_revision(bucket, 1, model_files(1))
    store = tmp_path / "store"
    first = run_cli("sync", *sidecar_flags(store, bucket))
    assert first.returncode == 0, first.stderr
    assert (store / "ranker" / "1").is_dir()
    result, modules = _imported("sync", *sidecar_flags(store, bucket))
    assert result.returncode == 0, result.stderr
    assert "modelsync.sync" in modules  # the pass really ran in this process
    heavy = ("modelsync.channel", "modelsync.release_cli", "modelsync.sync.policy.follow")
    assert _loaded(modules, (*_SDKS, *heavy)) == []


def test_noop_file_sync_imports_no_bake_smoke_events_or_http_client(tmp_path: Path) -> None:
    """A no-op sync of a model without bake, smoke or events loads none of their code."""
    bucket = tmp_path / "bucket" / "ranker"
    put_revision(bucket, 1, model_files(1))
    store = tmp_path / "store"
    assert run_cli("sync", *sidecar_flags(store, bucket)).returncode == 0
    result, modules = _imported("sync", *sidecar_flags(store, bucket))
    assert result.returncode == 0, result.stderr
    assert "modelsync.config" in modules  # the configuration models are there
    unused = (
        "modelsync.events.hub",
        "modelsync.events.runner",
        "modelsync.events.push",
        "modelsync.bakejudge",
        "modelsync.metricsread",
        "modelsync.sync.bake",
        "modelsync.sync.smoke",
        "modelsync.sync.report",
        "modelsync.reports",
        "modelsync.transport.client",
        "urllib3",
        "prometheus_client",
    )
    assert _loaded(modules, unused) == []


def test_s3_sync_imports_botocore_without_pyopenssl_or_rich(
    tmp_path: Path, s3_backend: S3Backend
) -> None:
    """An s3:// sync loads botocore but not urllib3's pyOpenSSL shim, pyOpenSSL or rich,
    which botocore and structlog would import when installed (the oms extra installs
    both; each costs tens of milliseconds at every start)."""
    files = model_files(1)
    for name, data in files.items():
        s3_backend.put(f"1/{name}", data)
    doc = manifest_doc(files, "ranker", 1)
    s3_backend.put(f"1/{MANIFEST_NAME}", json.dumps(doc).encode())
    config = tmp_path / "modelsync.toml"
    options = f'{{ endpoint_url = "{s3_backend.endpoint}", addressing_style = "path" }}'
    config.write_text(
        f'store = "{tmp_path / "store"}"\n\n[[models]]\nname = "ranker"\n'
        f'source = "{s3_backend.url}"\nsource_options = {options}\n'
    )
    first = run_cli("sync", "--config", str(config), env=S3_ENV)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "store" / "ranker" / "1").is_dir()
    result, modules = _imported("sync", "--config", str(config), env=S3_ENV)
    assert result.returncode == 0, result.stderr
    assert "botocore.client" in modules  # the S3 client was really made
    # A hidden module is still listed, as an attempt that found nothing (a few
    # microseconds); what it would have loaded is not.
    assert _loaded(modules, ("OpenSSL", "cryptography.x509")) == []
    assert [m for m in modules if m.startswith("rich.")] == []


def test_a_command_exits_with_the_gc_frozen(tmp_path: Path) -> None:
    """The console entry freezes the GC as any command (here `status`) returns, so the
    interpreter's last collections skip what it built (86-173 ms after a `sync`)."""
    bucket = tmp_path / "bucket" / "ranker"
    put_revision(bucket, 1, model_files(1))
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen at exit', gc.get_freeze_count(), file=sys.stderr))\n"
        "from modelsync.entry import main\n"
        "main(sys.argv[1:])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "status", *sidecar_flags(tmp_path / "store", bucket)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    frozen = re.search(r"^frozen at exit (\d+)$", result.stderr, re.M)
    assert frozen is not None, result.stderr
    # Every module, class and function start-up made: tens of thousands of objects.
    assert int(frozen[1]) > 10_000
