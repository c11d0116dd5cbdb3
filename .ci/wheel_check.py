"""Install a modelsync wheel the way docs/operations.md says, and run it for real.

A fresh virtual environment (no source tree on its path), `pip install` of the
wheel, then `modelsync --version`, a `publish` of a small revision to a file://
bucket, a `sync` of it, `status` and `verify`: exit codes, output and the bytes
served are checked. Usage: python3 .ci/wheel_check.py dist/modelsync-<version>-*.whl
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VERSION = "1700000300"


def run(argv: list[str], cwd: Path, expect: int = 0) -> str:
    """``argv``'s stdout; exits with a message when its exit code is not ``expect``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSYNC_", "PYTHON"))}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != expect:
        sys.exit(f"{' '.join(argv)}: exit {done.returncode}, not {expect}\n{done.stderr}")
    return done.stdout


def check(what: str, ok: bool) -> None:
    if not ok:
        sys.exit(f"wheel check failed: {what}")
    print(f"ok: {what}")


def main(wheel: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="modelsync-wheel-"))
    try:
        check_in(wheel, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_in(wheel: Path, work: Path) -> None:
    version = wheel.name.split("-")[1]
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], work)
    run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel.resolve())], work)
    modelsync = str(venv / "bin" / "modelsync")
    where = run(
        [str(venv / "bin" / "python"), "-c", "import modelsync; print(modelsync.__file__)"], work
    )
    check("modelsync is imported from the virtual environment", where.startswith(str(venv)))
    out = run([modelsync, "--version"], work)
    check(f"modelsync --version says {version}", out == f"modelsync, version {version}\n")

    src = work / "export"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(b"graph" * 1000)
    (src / "variables.data").write_bytes(os.urandom(100_000))
    bucket = f"file://{work}/bucket/ranker"
    out = run([modelsync, "publish", str(src), bucket, "--version", VERSION], work)
    check("publish prints the version", out == f"{VERSION}\n")
    flags = ["--store", str(work / "data" / "models"), "--model", "ranker", "--source", bucket]
    run([modelsync, "sync", "--require", *flags], work)
    served = work / "data" / "models" / "ranker" / "current"
    check(
        "sync serves the published bytes",
        all((served / f.name).read_bytes() == f.read_bytes() for f in src.iterdir()),
    )
    out = run([modelsync, "status", *flags], work)
    check("status names the active version", out.startswith(f"ranker: active {VERSION} "))
    out = run([modelsync, "verify", str(served)], work)
    check("verify finds the revision intact", "intact" in out)
    run([modelsync, "sync", "--store", str(work / "data" / "models")], work, expect=2)
    check("a sync without a model exits 2", True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
