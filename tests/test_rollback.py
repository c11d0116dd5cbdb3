"""Rollback paths with a scripted server: first activation, nothing to go back to, a
previous revision that also fails, the metrics gate, and the daemon's view of it all."""

from __future__ import annotations

import json
from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.config import ConfirmConfig, ModelConfig, NotifyConfig
from modelsync.store import Store
from modelsync.syncer import Outcome, Syncer
from tests.daemonproc import DaemonProcess
from tests.helpers import check_invariants, manifest_doc, model_files, put_revision, snapshot
from tests.httpstub import http_stub


def _model(bucket: Path, confirm_url: str | None, **extra: object) -> ModelConfig:
    confirm = (
        ConfirmConfig(
            method="http", url=confirm_url, json_field="version", period=0.05, timeout=0.5
        )
        if confirm_url
        else ConfirmConfig()
    )
    return ModelConfig(name="ranker", source=f"file://{bucket}", confirm=confirm, **extra)  # type: ignore[arg-type]


def test_first_activation_stands_without_a_server(tmp_path: Path, bucket: Path) -> None:
    """Init-container case: no pidfile yet, so the first revision stands."""
    put_revision(bucket, 1, model_files(1))
    model = ModelConfig(
        name="ranker",
        source=f"file://{bucket}",
        notify=NotifyConfig(method="signal", pidfile=tmp_path / "none.pid"),
    )
    syncer = Syncer(Store(tmp_path / "store", tmp_path / "store" / ".modelsync"))
    result = syncer.sync(model, CancelToken())
    assert (result.outcome, result.active) == (Outcome.ACTIVATED, 1)


def test_first_revision_refused_leaves_no_active_version(tmp_path: Path, bucket: Path) -> None:
    """The server is up but cannot load the first revision: nothing to roll back to."""
    put_revision(bucket, 1, model_files(1))
    store = tmp_path / "store"
    with http_stub(lambda m, p, b: (200, b'{"version": 0}')) as (url, _):
        result = Syncer(Store(store, store / ".modelsync")).sync(_model(bucket, url), CancelToken())
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.refused == [1]
    assert not (store / "ranker" / "current").exists()
    assert check_invariants(store, "ranker").violations == []


def test_failed_reload_restores_exactly_and_refuses(tmp_path: Path, bucket: Path) -> None:
    """v2 not confirmed: the served tree is byte-identical to before; v2 refused for good."""
    store = tmp_path / "store"
    serving = {"version": 1}
    with http_stub(lambda m, p, b: (200, json.dumps(serving).encode())) as (url, _):
        syncer = Syncer(Store(store, store / ".modelsync"))
        put_revision(bucket, 1, model_files(1))
        assert syncer.sync(_model(bucket, url), CancelToken()).outcome is Outcome.ACTIVATED
        before = snapshot(store / "ranker")
        put_revision(bucket, 2, model_files(2))
        result = syncer.sync(_model(bucket, url), CancelToken())
        assert result.outcome is Outcome.ROLLED_BACK and result.refused == [2]
        assert snapshot(store / "ranker") == before
        assert syncer.sync(_model(bucket, url), CancelToken()).outcome is Outcome.UNCHANGED
        put_revision(bucket, 3, model_files(3))
        serving["version"] = 3
        assert syncer.sync(_model(bucket, url), CancelToken()).active == 3


def test_gate_refuses_without_downloading(tmp_path: Path, bucket: Path) -> None:
    """A metric below the bar, or missing, refuses the revision before any byte moves."""
    store = tmp_path / "store"
    for version, metrics in ((1, {"ndcg@10": 0.41}), (2, {"ndcg@10": 0.2}), (3, {})):
        files = model_files(version)
        put_revision(bucket, version, files, manifest=False)
        doc = manifest_doc(files, version=version)
        if metrics:
            doc["metrics"] = metrics
        (bucket / str(version) / "modelsync-manifest.json").write_text(json.dumps(doc))
    result = Syncer(Store(store, store / ".modelsync")).sync(
        _model(bucket, None, gate={"ndcg@10": 0.3}), CancelToken()
    )
    assert result.active == 1
    assert sorted(result.refused) == [2, 3]
    assert result.stats.files_fetched == 3  # only version 1's files
    state = Store(store, store / ".modelsync").model("ranker").load_state()
    assert "below 0.3" in state.refused[2] and "missing" in state.refused[3]


def test_daemon_reports_a_rollback_that_also_failed(
    tmp_path: Path, bucket: Path, procs: list[DaemonProcess]
) -> None:
    """Previous revision fails to confirm too: loud log, metric, /readyz 503; store kept."""
    store = tmp_path / "store"
    serving = {"version": 1}
    with http_stub(lambda m, p, b: (200, json.dumps(serving).encode())) as (url, _):
        config = tmp_path / "c.toml"
        config.write_text(
            f'store = "{store}"\ninterval = "1h"\n[[models]]\nname = "ranker"\n'
            f'source = "file://{bucket}"\n[models.confirm]\nmethod = "http"\n'
            f'url = "{url}"\njson_field = "version"\ntimeout = "1s"\n'
            'period = "0.1s"\n'
        )
        put_revision(bucket, 1, model_files(1))
        daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
        procs.append(daemon)
        daemon.wait_for(lambda e: e.get("event") == "committed")
        serving["version"] = 99  # the server breaks: neither v2 nor v1 will confirm
        put_revision(bucket, 2, model_files(2))
        daemon.wait_for(lambda e: e.get("event", "").startswith("previous revision failed"))
        assert daemon.http("GET", "/readyz")[0] == 503
        metrics = daemon.http("GET", "/metrics")[1].decode()
        assert 'modelsync_rollbacks_total{model="ranker"} 1.0' in metrics
        assert 'modelsync_rollback_failed{model="ranker"} 1.0' in metrics
        assert (store / "ranker" / "current").resolve().name == "1"
        critical = [e for e in daemon.events() if e.get("level") == "critical"]
        assert critical and critical[0]["version"] == 1
