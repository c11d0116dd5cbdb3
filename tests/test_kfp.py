"""integrations/kfp: the Kubeflow Pipelines component and the example pipeline, compiled
and run with kfp's local SubprocessRunner (in .envs/kfp, `make kfp`) against moto's S3
and the GCS emulator; a sidecar following the channel adopts what it published."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from modelsync.publish import publish
from tests.backends import GcsBackend, NetworkBackend
from tests.helpers import REPO, run_cli, write_tree

KFP_PYTHON = REPO / ".envs" / "kfp" / "bin" / "python"
KFP_DIR = REPO / "integrations" / "kfp"
RULES = ("ndcg@10 >= production - 0.005", "ndcg@10 >= baseline + 0.02")

pytestmark = pytest.mark.skipif(
    not KFP_PYTHON.exists(), reason="kfp's environment is not built: run `make kfp`"
)


def _kfp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with the kfp environment's Python, modelsync from this tree."""
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [str(KFP_PYTHON), *args], capture_output=True, text=True, timeout=600, cwd=cwd,
        env=env, check=False,
    )  # fmt: skip


def test_the_compiled_component_matches_its_source(tmp_path: Path) -> None:
    """modelsync_step.yaml is what kfp compiles from modelsync_step.py today."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "from modelsync_step import compile_to; compile_to(Path(sys.argv[2]))"
    )
    done = _kfp("-c", code, str(KFP_DIR), str(tmp_path / "step.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "step.yaml").read_text() == (KFP_DIR / "modelsync_step.yaml").read_text(), (
        "integrations/kfp/modelsync_step.yaml is stale: run "
        ".envs/kfp/bin/python integrations/kfp/modelsync_step.py"
    )


def test_the_example_pipeline_compiles(tmp_path: Path) -> None:
    """The example pipeline compiles to a pipeline spec naming both steps."""
    out = tmp_path / "pipeline.yaml"
    done = _kfp(str(KFP_DIR / "example_pipeline.py"), "--compile", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "comp-modelsync-step" in text and "comp-train" in text


@pytest.fixture(params=["gs", "s3"])
def backend(request: pytest.FixtureRequest) -> NetworkBackend:
    """A fresh bucket on the GCS emulator or on moto's S3."""
    if request.param == "gs":
        return GcsBackend(
            request.getfixturevalue("gcs_emulator"), request.getfixturevalue("gcs_bucket")
        )
    found: NetworkBackend = request.getfixturevalue("s3_backend")
    return found


def _run(backend: NetworkBackend, tmp_path: Path, quality: float) -> dict[str, object]:
    options = [f"--source-option={k}={v}" for k, v in backend.options().items()]
    gates = [f"--gate={rule}" for rule in RULES]
    done = _kfp(
        str(KFP_DIR / "example_pipeline.py"), "--source", backend.url, "--channel", "prod",
        "--quality", str(quality), *gates, "--baseline", "1", "--percent", "100", *options,
        "--pipeline-root", str(tmp_path / "root"), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    outputs: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return outputs


def _sidecar(backend: NetworkBackend, tmp_path: Path) -> Path:
    config = tmp_path / "sidecar.toml"
    options = "".join(f'{k} = "{v}"\n' for k, v in backend.options().items())
    config.write_text(
        f'store = "{tmp_path}/models"\nidentity = "host-1"\n[[models]]\nname = "ranker"\n'
        f'source = "{backend.url}"\nchannel = "prod"\n[models.source_options]\n{options}'
    )
    return config


def test_the_pipeline_gates_publishes_and_canaries(backend: NetworkBackend, tmp_path: Path) -> None:
    """First model promoted; a better one published and canaried, and a sidecar on the
    channel adopts it; a worse one refused with the rule and both values as the step's
    output, nothing published."""
    baseline = write_tree(tmp_path / "popular", {"popular.json": b"[1, 2, 3]"})
    publish(baseline, backend.url, version=1, metrics={"ndcg@10": 0.39},
            source_options=backend.options())  # fmt: skip
    first = _run(backend, tmp_path, 0.42)
    assert first["decision"] == "promoted", first
    better = _run(backend, tmp_path, 0.43)
    assert better["decision"] == "canary", better
    assert isinstance(better["version"], int) and better["version"] > first["version"]  # type: ignore[operator]

    config = _sidecar(backend, tmp_path)
    done = run_cli("sync", "--config", str(config))
    assert done.returncode == 0, done.stderr
    served = tmp_path / "models" / "ranker"
    assert (served / "current").readlink() == Path(str(better["version"]))
    assert b"quality 0.430000" in (served / "current" / "saved_model.pb").read_bytes()

    options = [f"--source-option={k}={v}" for k, v in backend.options().items()]
    promoted = run_cli(
        "release", "promote", "ranker", "--source", backend.url, "--channel", "prod", *options
    )
    assert promoted.returncode == 0, promoted.stderr
    source = backend.source()
    try:
        before = source.list_versions()
    finally:
        source.close()
    worse = _run(backend, tmp_path, 0.40)
    assert worse == {
        "version": 0,
        "decision": "refused",
        "reason": "gate 'ndcg@10 >= production - 0.005': candidate ndcg@10 = 0.4 < 0.425 "
        f"(production {better['version']}: 0.43); gate 'ndcg@10 >= baseline + 0.02': "
        "candidate ndcg@10 = 0.4 < 0.41 (baseline 1: 0.39)",
    }
    source = backend.source()
    try:
        assert source.list_versions() == before
    finally:
        source.close()
