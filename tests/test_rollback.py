"""Rollback paths with a scripted server: first activation, nothing to go back to, a
previous revision that also fails, verdicts versus timeouts, the metrics gate, and the
daemon's view of it all."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.config import ConfirmConfig, ModelConfig, NotifyConfig
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.daemonproc import DaemonProcess
from tests.helpers import check_invariants, manifest_doc, model_files, put_revision, snapshot
from tests.httpstub import http_stub

# The scripted server's way of saying "I could not load it".
FAILED = (500, b'{"error": "load failed: bad weights"}')


def _model(bucket: Path, confirm_url: str | None, **extra: object) -> ModelConfig:
    confirm = (
        ConfirmConfig.of(
            method="http",
            url=confirm_url + "/{version}",
            json_field="version",
            period=0.05,
            timeout=0.5,
            fail_status=(500,),
        )
        if confirm_url
        else ConfirmConfig.of()
    )
    return ModelConfig(name="ranker", source=f"file://{bucket}", confirm=confirm, **extra)  # type: ignore[arg-type]


def _eventually(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


def test_first_activation_stands_without_a_server(tmp_path: Path, bucket: Path) -> None:
    """Init-container case: no pidfile yet, so the first revision stands."""
    put_revision(bucket, 1, model_files(1))
    model = ModelConfig(
        name="ranker",
        source=f"file://{bucket}",
        notify=NotifyConfig.of(method="signal", pidfile=tmp_path / "none.pid"),
    )
    syncer = Syncer(Store(tmp_path / "store", tmp_path / "store" / ".modelsync"))
    result = syncer.sync(model, CancelToken())
    assert (result.outcome, result.active) == (Outcome.ACTIVATED, 1)


def test_first_revision_refused_leaves_no_active_version(tmp_path: Path, bucket: Path) -> None:
    """The server is up but cannot load the first revision: nothing to roll back to."""
    put_revision(bucket, 1, model_files(1))
    store = tmp_path / "store"
    with http_stub(lambda m, p, b: FAILED) as (url, _):
        result = Syncer(Store(store, store / ".modelsync")).sync(_model(bucket, url), CancelToken())
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.refused == [1]
    assert not (store / "ranker" / "current").exists()
    assert check_invariants(store, "ranker").violations == []


def test_failed_reload_restores_exactly_and_refuses(tmp_path: Path, bucket: Path) -> None:
    """The server fails v2: the served tree is byte-identical to before; v2 refused for good
    with the server's words, at once (not at the timeout)."""
    store = tmp_path / "store"
    failing: set[int] = set()

    def answer(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        version = int(p.rsplit("/", 1)[1])
        return FAILED if version in failing else (200, json.dumps({"version": version}).encode())

    with http_stub(answer) as (url, _):
        syncer = Syncer(Store(store, store / ".modelsync"))
        put_revision(bucket, 1, model_files(1))
        assert syncer.sync(_model(bucket, url), CancelToken()).outcome is Outcome.ACTIVATED
        before = snapshot(store / "ranker")
        put_revision(bucket, 2, model_files(2))
        failing.add(2)
        result = syncer.sync(_model(bucket, url), CancelToken())
        assert result.outcome is Outcome.ROLLED_BACK and result.refused == [2]
        assert "bad weights" in (result.error or "")
        assert snapshot(store / "ranker") == before
        assert syncer.sync(_model(bucket, url), CancelToken()).outcome is Outcome.UNCHANGED
        put_revision(bucket, 3, model_files(3))
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


def test_timeouts_roll_back_and_refuse_only_after_unknown_attempts(
    tmp_path: Path, bucket: Path
) -> None:
    """No verdict (the server never reaches v2): rolled back and tried again, not refused;
    refused on the unknown_attempts-th time, with the count in the state until then."""
    store = tmp_path / "store"
    with http_stub(lambda m, p, b: (200, b'{"version": 1}')) as (url, _):
        syncer = Syncer(Store(store, store / ".modelsync"))
        model = _model(bucket, url, unknown_attempts=2)
        put_revision(bucket, 1, model_files(1))
        assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
        before = snapshot(store / "ranker")
        put_revision(bucket, 2, model_files(2))
        first = syncer.sync(model, CancelToken())
        assert (first.outcome, first.refused) == (Outcome.ROLLED_BACK, [])
        assert "not confirmed within 0.5s" in (first.error or "")
        assert snapshot(store / "ranker") == before
        state = Store(store, store / ".modelsync").model("ranker").load_state()
        assert state.unknown == {2: 1} and 2 not in state.refused
        second = syncer.sync(model, CancelToken())
        assert (second.outcome, second.refused) == (Outcome.ROLLED_BACK, [2])
        state = Store(store, store / ".modelsync").model("ranker").load_state()
        assert "no verdict from the server in 2 attempts" in state.refused[2]
        assert state.unknown == {}
        assert syncer.sync(model, CancelToken()).outcome is Outcome.UNCHANGED


def test_daemon_reports_a_rollback_that_also_failed_and_clears_it(
    tmp_path: Path, bucket: Path, procs: list[DaemonProcess]
) -> None:
    """Previous revision fails to confirm too: loud log, metric, /readyz 503, status says
    so; once the server serves the active revision again, all of it clears."""
    store = tmp_path / "store"
    broken = {"on": False}

    def answer(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        version = int(p.rsplit("/", 1)[1])
        if version == 2 or broken["on"]:
            broken["on"] = True  # v2 breaks the server: v1 does not come back either
            return 200, b'{"version": 99}'
        return 200, json.dumps({"version": version}).encode()

    with http_stub(answer) as (url, _):
        config = tmp_path / "c.toml"
        config.write_text(
            f'store = "{store}"\ninterval = "1h"\n[[models]]\nname = "ranker"\n'
            f'source = "file://{bucket}"\nunknown_attempts = 1\n'
            f'[models.confirm]\nmethod = "http"\nurl = "{url}/{{version}}"\n'
            'json_field = "version"\ntimeout = "1s"\nperiod = "0.1s"\n'
        )
        put_revision(bucket, 1, model_files(1))
        daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
        procs.append(daemon)
        daemon.wait_for(lambda e: e.get("event") == "committed")
        put_revision(bucket, 2, model_files(2))
        daemon.http("POST", "/sync")
        daemon.wait_for(lambda e: e.get("event", "").startswith("previous revision failed"))
        assert daemon.http("GET", "/readyz")[0] == 503
        _eventually(  # the metrics are set when the pass ends
            lambda: (
                'modelsync_rollback_failed{model="ranker"} 1.0'
                in daemon.http("GET", "/metrics")[1].decode()
            )
        )
        metrics = daemon.http("GET", "/metrics")[1].decode()
        assert 'modelsync_rollbacks_total{model="ranker"} 1.0' in metrics
        assert (store / "ranker" / "current").resolve().name == "1"
        critical = [e for e in daemon.events() if e.get("level") == "critical"]
        assert critical and critical[0]["version"] == 1
        status = json.loads(daemon.http("GET", "/status")[1])["models"][0]
        assert status["rollback_failed"] is True and "version is 99" in status["server_reason"]
        assert not any(e.get("event") == "recovered" for e in daemon.events())

        mark = len(daemon.events())
        broken["on"] = False  # the server serves v1 again
        daemon.wait_for(lambda e: e.get("event") == "server serves the active revision", 30, mark)
        assert daemon.http("GET", "/readyz")[0] == 200
        _eventually(
            lambda: (
                'modelsync_rollback_failed{model="ranker"} 0.0'
                in daemon.http("GET", "/metrics")[1].decode()
            )
        )
        status = json.loads(daemon.http("GET", "/status")[1])["models"][0]
        assert status["rollback_failed"] is False and status["server_reason"] is None
