"""A pass that follows a channel (sync/policy/follow.py), on a file:// bucket and real stores."""

from __future__ import annotations

from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.channel import Canary, Pointer, in_cohort
from modelsync.config import ModelConfig
from modelsync.publish import publish
from modelsync.reports import write_report
from modelsync.sources import open_source
from modelsync.sync import Outcome, Syncer
from modelsync.volume import Store
from tests.helpers import FAST_RETRY, write_tree

HOSTS = [f"h{i}" for i in range(200)]


def _setup(tmp_path: Path) -> tuple[str, ModelConfig]:
    url = f"file://{tmp_path}/bucket/m"
    for version, auc in ((1, 0.9), (2, 0.9), (3, 0.1)):
        src = write_tree(tmp_path / f"src{version}", {"model.bin": b"v%d" % version})
        publish(src, url, version=version, metrics={"auc": auc})
    model = ModelConfig(name="m", source=url, channel="prod", report=True, gate={"auc": 0.5})
    return url, model


def _host(tmp_path: Path, identity: str) -> Syncer:
    root = tmp_path / identity
    return Syncer(Store(root / "store", root / ".state"), retry=FAST_RETRY, identity=identity)


def _serving(tmp_path: Path, identity: str) -> int:
    return int((tmp_path / identity / "store" / "m" / "current").readlink().name)


def _pointer(url: str, pointer: Pointer) -> None:
    open_source(url).put_control("_channels/prod.json", pointer.to_bytes())


def test_hold_keeps_adopters_and_stops_the_rest(tmp_path: Path) -> None:
    url, model = _setup(tmp_path)
    canary = Canary(version=2, percent=50)
    inside = next(h for h in HOSTS if in_cohort("m", canary, h))
    later = next(
        h
        for h in HOSTS
        if not in_cohort("m", canary, h) and in_cohort("m", Canary(version=2, percent=100), h)
    )
    hosts = {h: _host(tmp_path, h) for h in (inside, later)}
    _pointer(url, Pointer(stable=1))
    for syncer in hosts.values():
        assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    _pointer(url, Pointer(stable=1, canary=canary, on_halt="hold"))
    result = hosts[inside].sync(model, CancelToken())
    assert result.outcome is Outcome.ACTIVATED and _serving(tmp_path, inside) == 2
    assert result.channel is not None and result.channel.in_cohort
    write_report(open_source(url), "m", 2, "elsewhere", "rolled_back", "oom")
    _pointer(url, Pointer(stable=1, canary=Canary(version=2, percent=100), on_halt="hold"))
    for syncer in hosts.values():
        result = syncer.sync(model, CancelToken())
        assert result.outcome is Outcome.UNCHANGED
        assert result.channel is not None and result.channel.halted
    assert (_serving(tmp_path, inside), _serving(tmp_path, later)) == (2, 1)


def test_a_version_that_fails_the_gate_is_refused_and_reported(tmp_path: Path) -> None:
    url, model = _setup(tmp_path)
    _pointer(url, Pointer(stable=1))
    syncer = _host(tmp_path, "h1")
    syncer.sync(model, CancelToken())
    _pointer(url, Pointer(stable=3))
    result = syncer.sync(model, CancelToken())
    assert result.outcome is Outcome.UNCHANGED and result.refused == [3] and not result.ok
    assert _serving(tmp_path, "h1") == 1
    failed = tmp_path / "bucket" / "m" / "_reports" / "3" / "failed" / "h1.json"
    assert b'"refused"' in failed.read_bytes() and b"gate: auc" in failed.read_bytes()
    # Refused for good: the next pass does not try it again, and is not a failure.
    assert syncer.sync(model, CancelToken()).outcome is Outcome.UNCHANGED


def test_a_hostile_pointer_fails_the_pass_and_keeps_the_revision(tmp_path: Path) -> None:
    url, model = _setup(tmp_path)
    _pointer(url, Pointer(stable=1))
    syncer = _host(tmp_path, "h1")
    syncer.sync(model, CancelToken())
    pointer = tmp_path / "bucket" / "m" / "_channels" / "prod.json"
    for hostile in (b'{"stable": "../../etc"}', b"\xff" * 100, b"{" * 20_000):
        pointer.write_bytes(hostile)
        result = syncer.sync(model, CancelToken())
        assert result.outcome is Outcome.FAILED and result.error is not None
        assert "_channels/prod.json" in result.error and "\n" not in result.error
        assert _serving(tmp_path, "h1") == 1
