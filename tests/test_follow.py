"""A pass that follows a channel (sync/policy/follow.py), on a file:// bucket and real stores."""

from __future__ import annotations

import time
from pathlib import Path

from modelsync.cancel import CancelToken
from modelsync.channel import Canary, Pointer, in_cohort
from modelsync.checkconfig import VerifyConfig
from modelsync.config import ModelConfig
from modelsync.publish import publish
from modelsync.release import Release
from modelsync.reports import write_report
from modelsync.signing import generate_keypair, load_private_key
from modelsync.sources import open_source
from modelsync.state import ChannelInfo, ModelState
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
    hostile_pointers = (
        b'{"stable": "../../etc"}',
        b"\xff" * 100,
        b"{" * 20_000,
        b'{"stable": 1, "canary": {"version": 2, "percent": ' + b"9" * 400 + b"}}",
        b'{"stable": 1, "canary": {"version": 2, "percent": NaN}}',
        b'{"stable": 9223372036854775808}',
    )
    for hostile in hostile_pointers:
        pointer.write_bytes(hostile)
        result = syncer.sync(model, CancelToken())
        assert result.outcome is Outcome.FAILED and result.error is not None
        assert "_channels/prod.json" in result.error and "\n" not in result.error
        assert _serving(tmp_path, "h1") == 1


def _signed_host(tmp_path: Path) -> tuple[str, ModelConfig, Release]:
    """A bucket of signed revisions 1, 2 and 4, a model that requires signatures, and a
    release tool holding the key."""
    url = f"file://{tmp_path}/bucket/m"
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    for version in (1, 2, 4):
        src = write_tree(tmp_path / f"src{version}", {"model.bin": b"v%d" % version})
        publish(src, url, version=version, sign_key=tmp_path / "k.pem")
    verify = VerifyConfig(public_keys=(tmp_path / "k.pub",), require_signature=True)
    model = ModelConfig(name="m", source=url, channel="prod", report=True, verify=verify)
    signer = load_private_key(tmp_path / "k.pem")
    return url, model, Release(open_source(url), "m", "prod", "ci", signer=signer)


def test_a_bucket_writer_cannot_move_a_signed_fleet_back(tmp_path: Path) -> None:
    """require_signature: an older signed pointer replayed, an unsigned one, or an
    expired one fails the pass with one line; the host keeps serving its revision,
    and status (the state) says why; a signed rollback is followed."""
    url, model, release = _signed_host(tmp_path)
    path = tmp_path / "bucket" / "m" / "_channels" / "prod.json"
    syncer = _host(tmp_path, "h1")
    release.promote(1)
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    old = path.read_bytes()  # signed, valid: stable 1
    release.promote(2)
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    attacks = {
        old: "seq",  # replayed: a signed pointer to the older stable
        Pointer(stable=1).to_bytes(): "not signed",
    }
    for raw, why in attacks.items():
        path.write_bytes(raw)
        result = syncer.sync(model, CancelToken())
        assert result.outcome is Outcome.FAILED and result.error is not None
        assert "_channels/prod.json: refused" in result.error and why in result.error
        assert "\n" not in result.error and _serving(tmp_path, "h1") == 2
        saved = ModelState.load(tmp_path / "h1" / ".state" / "state" / "m.json")
        assert saved.last_error == result.error
    release = Release(open_source(url), "m", "prod", "ci", signer=release._signer, expires_in=0.5)
    release.set_stable(4, rollback=False)
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    time.sleep(1.6)  # the newest pointer, frozen past its expiry
    result = syncer.sync(model, CancelToken())
    assert result.outcome is Outcome.FAILED and "expired at" in (result.error or "")
    assert _serving(tmp_path, "h1") == 4
    release = Release(open_source(url), "m", "prod", "ci", signer=release._signer)
    release.set_stable(2, rollback=True)  # deliberate, signed
    assert syncer.sync(model, CancelToken()).outcome is Outcome.ACTIVATED
    assert _serving(tmp_path, "h1") == 2


def test_markers_of_an_earlier_canary_do_not_halt_the_next(tmp_path: Path) -> None:
    """A canary of the same version started again, and markers planted before it
    started, do not halt it; its own hosts' failures do."""
    url, model = _setup(tmp_path)
    release = Release(open_source(url), "m", "prod", "ci")
    release.promote(1)
    release.start(2, 100.0, None, None)
    syncer = _host(tmp_path, "h1")
    source = open_source(url)
    first = release.read()[0]
    assert first is not None and first.canary is not None
    info = ChannelInfo("prod", 1, 2, 100.0, True, False, 2, nonce=first.canary.nonce)
    write_report(source, "m", 2, "early", "rolled_back", "oom", channel=info)
    write_report(source, "m", 2, "planted", "rolled_back", "oom")  # no nonce
    release.abort()
    release.start(2, 100.0, None, None)
    result = syncer.sync(model, CancelToken())
    assert result.outcome is Outcome.ACTIVATED and _serving(tmp_path, "h1") == 2
    assert result.channel is not None and not result.channel.halted
    second = release.read()[0]
    assert second is not None and second.canary is not None
    assert second.canary.nonce != first.canary.nonce
    info = ChannelInfo("prod", 1, 2, 100.0, True, False, 2, nonce=second.canary.nonce)
    write_report(source, "m", 2, "h2", "rolled_back", "oom", channel=info)
    result = syncer.sync(model, CancelToken())
    assert result.channel is not None and result.channel.halted
    assert _serving(tmp_path, "h1") == 1
