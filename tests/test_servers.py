"""The server presets' own rules (modelsync/servers/), with scripted answers where a
server is needed; the real servers are in tests/test_servers_*.py (-m servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.errors import LoadFailed, RefusedError, ServerNotRunning
from modelsync.reload import ProbeState, ReloadTarget, server_words
from modelsync.servers import get_preset, notifier_for, preset_names, prober_for
from tests.helpers import free_port, write_tree
from tests.httpstub import http_stub


def _model(server: str, **extra: object) -> ModelConfig:
    return ModelConfig.model_validate(
        {"name": "iris", "source": "file:///bucket/iris", "server": server, **extra}
    )


def test_every_preset_declares_its_layout_and_ways() -> None:
    """Each preset module builds; only custom keeps a current link; scanning servers
    need a prober and a notifier unless they watch the directory."""
    assert preset_names() == ["custom", "kserve", "mlserver", "tfserving", "triton"]
    for name in preset_names():
        preset = get_preset(name)
        assert preset.name == name
        assert preset.current_link is (name == "custom")
    assert notifier_for(_model("tfserving")) is None
    assert notifier_for(_model("triton", server_options={"mode": "poll"})) is None
    for name in ("triton", "mlserver", "kserve"):
        assert notifier_for(_model(name)) is not None and prober_for(_model(name)) is not None
    assert prober_for(_model("custom")) is None
    assert _model("triton").layout.model_files == ("config.pbtxt",)
    assert _model("mlserver").layout.exclusive and not _model("tfserving").layout.exclusive


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (None, "model-settings.json: missing"),
        (b"{not json", "not readable JSON"),
        ({"implementation": "x"}, "name is None, must be 'iris'"),
        ({"name": "iris", "parameters": {"version": "6"}}, "parameters.version is '6'"),
    ],
)
def test_mlserver_refuses_revisions_it_would_misname(
    tmp_path: Path, settings: object, message: str
) -> None:
    """A revision without settings naming the model (or naming another version) is
    refused before MLServer sees it."""
    files = {"model.joblib": b"x"}
    if settings is not None:
        raw = settings if isinstance(settings, bytes) else json.dumps(settings).encode()
        files["model-settings.json"] = raw
    root = write_tree(tmp_path / "7", files)
    with pytest.raises(RefusedError, match=message):
        get_preset("mlserver").check_revision(_model("mlserver"), 7, root)
    ok = {"name": "iris", "parameters": {"version": "7"}}
    (root / "model-settings.json").write_text(json.dumps(ok))
    get_preset("mlserver").check_revision(_model("mlserver"), 7, root)


def test_triton_refuses_a_config_for_another_model(tmp_path: Path) -> None:
    """config.pbtxt naming another model would make Triton refuse the load."""
    root = write_tree(tmp_path / "3", {"config.pbtxt": b'name: "other"\nbackend: "python"\n'})
    with pytest.raises(RefusedError, match="names model 'other'"):
        get_preset("triton").check_revision(_model("triton"), 3, root)
    (root / "config.pbtxt").write_text('name: "iris"\nbackend: "python"\n')
    get_preset("triton").check_revision(_model("triton"), 3, root)


def test_triton_index_gives_each_version_its_own_verdict() -> None:
    """READY, LOADING, UNAVAILABLE with Triton's reason, 'unloaded', absent: the probe
    looks at the asked version only (Triton keeps stale entries of others)."""
    index = [
        {"name": "iris", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "iris", "version": "2", "state": "READY"},
        {"name": "iris", "version": "3", "state": "UNAVAILABLE", "reason": "Internal: bad\n\nAt:"},
        {"name": "iris", "version": "4", "state": "LOADING"},
        {"name": "other", "version": "5", "state": "READY"},
    ]
    with http_stub(lambda m, p, b: (200, json.dumps(index).encode())) as (url, seen):
        prober = prober_for(_model("triton", server_url=url))
        assert prober is not None
        states = {
            v: prober.probe(ReloadTarget("iris", v, Path(f"/m/{v}")), 2, CancelToken()).state
            for v in (1, 2, 3, 4, 5)
        }
    assert states == {
        1: ProbeState.ABSENT,
        2: ProbeState.LOADED,
        3: ProbeState.FAILED,
        4: ProbeState.LOADING,
        5: ProbeState.ABSENT,
    }
    assert seen[0][:2] == ("POST", "/v2/repository/index")
    port = free_port()
    dead = prober_for(_model("triton", server_url=f"http://127.0.0.1:{port}"))
    assert dead is not None
    assert (
        dead.probe(ReloadTarget("iris", 2, Path("/m/2")), 2, CancelToken()).state
        is ProbeState.UNREACHABLE
    )


def test_repository_load_failure_is_the_servers_verdict() -> None:
    """A synchronous load answering an error raises LoadFailed with the server's words
    (a Python traceback's last line); nothing listening is ServerNotRunning."""
    trace = b"Traceback (most recent call last):\n  File x\n_pickle.UnpicklingError: truncated"
    with http_stub(lambda m, p, b: (500, trace)) as (url, seen):
        notifier = notifier_for(_model("mlserver", server_url=url))
        assert notifier is not None
        with pytest.raises(LoadFailed, match=r"HTTP 500\): _pickle.UnpicklingError: truncated"):
            notifier.notify(ReloadTarget("iris", 7, Path("/m/7")), CancelToken())
    assert seen[0][:2] == ("POST", "/v2/repository/models/iris/load")
    dead = notifier_for(_model("kserve", server_url=f"http://127.0.0.1:{free_port()}"))
    assert dead is not None
    with pytest.raises(ServerNotRunning):
        dead.notify(ReloadTarget("iris", 7, Path("/m/7")), CancelToken())


def test_server_words_keep_the_line_that_names_the_error() -> None:
    """JSON error fields, tracebacks and multi-line reasons become one line."""
    assert server_words(b'{"error": "load failed: x"}') == "load failed: x"
    assert server_words(b"Traceback (most recent call last):\n  a\nValueError: y") == (
        "ValueError: y"
    )
    assert "\n" not in server_words(b"Internal: bad\n\nAt:\n  file(1)")


def test_each_preset_names_the_inference_endpoint_of_one_version(tmp_path: Path) -> None:
    """Smoke requests go to the new version's endpoint: versioned on Triton, TF Serving
    and MLServer settings with a version; the model's own on KServe (no versions) and
    unversioned MLServer settings; nowhere on custom (smoke.url decides)."""
    url = {"server_url": "http://h:1/"}
    unversioned = write_tree(tmp_path / "u", {"model-settings.json": b'{"name": "iris"}'})
    versioned = write_tree(
        tmp_path / "v", {"model-settings.json": b'{"name": "iris", "parameters": {"version": "7"}}'}
    )
    expected = {
        ("triton", versioned): "http://h:1/v2/models/iris/versions/7/infer",
        ("tfserving", versioned): "http://h:1/v1/models/iris/versions/7:predict",
        ("mlserver", versioned): "http://h:1/v2/models/iris/versions/7/infer",
        ("mlserver", unversioned): "http://h:1/v2/models/iris/infer",
        ("kserve", versioned): "http://h:1/v2/models/iris/infer",
        ("custom", versioned): None,
    }
    for (name, path), want in expected.items():
        assert get_preset(name).infer_url(_model(name, **url), 7, path) == want, name
