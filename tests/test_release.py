"""`modelsync release`: the pointer changes, their refusals, and lost-update safety."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelsync.channel import Pointer
from modelsync.cli import main
from modelsync.errors import ChannelError
from modelsync.publish import publish
from modelsync.release import Release
from modelsync.reports import write_report
from modelsync.signing import generate_keypair
from modelsync.sources import open_source
from modelsync.state import ChannelInfo
from tests.helpers import run_cli, write_tree


def _bucket(tmp_path: Path, versions: tuple[int, ...] = (1, 2, 3)) -> str:
    url = f"file://{tmp_path}/bucket/ranker"
    for version in versions:
        src = write_tree(tmp_path / f"src{version}", {"model.bin": b"v%d" % version})
        publish(src, url, version=version)
    return url


def _release(url: str, *args: str) -> tuple[int, str, str]:
    done = run_cli("release", args[0], "ranker", *args[1:], "--source", url, "--channel", "prod")
    return done.returncode, done.stdout, done.stderr


def test_the_commands_change_the_pointer(tmp_path: Path) -> None:
    url = _bucket(tmp_path)
    pointer_path = tmp_path / "bucket" / "ranker" / "_channels" / "prod.json"
    assert _release(url, "promote", "--version", "1")[0] == 0
    code, out, _ = _release(url, "start", "2", "--percent", "10", "--halt-after", "2")
    assert code == 0 and "canary 2 at 10 %" in out and "halt_after 2" in out
    assert _release(url, "set", "--percent", "30")[0] == 0
    pointer = Pointer.parse(pointer_path.read_bytes(), "p")
    assert (pointer.stable, pointer.canary, pointer.halt_after) == (1, pointer.canary, 2)
    assert pointer.canary is not None and pointer.canary.percent == 30.0
    assert pointer.updated_by and pointer.updated_at > 0
    assert _release(url, "promote")[0] == 0
    pointer = Pointer.parse(pointer_path.read_bytes(), "p")
    assert (pointer.stable, pointer.canary) == (2, None)
    assert _release(url, "start", "3", "--percent", "50")[0] == 0
    assert _release(url, "abort")[0] == 0
    assert Pointer.parse(pointer_path.read_bytes(), "p").canary is None
    code, out, _ = _release(url, "status", "--json")
    assert code == 0 and '"version": 2' in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("start", "9", "--percent", "5"), 1, "9: no such complete version"),
        (("set", "--percent", "5"), 1, "no canary in progress"),
        (("promote",), 1, "no canary to promote"),
        (("abort",), 1, "no canary in progress"),
        (("start", "2", "--percent", "101"), 2, "101"),
        (("start", "1", "--percent", "5"), 1, "1 is already the stable version"),
    ],
)
def test_refusals_are_one_line_and_change_nothing(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    url = _bucket(tmp_path)
    assert _release(url, "promote", "--version", "1")[0] == 0
    pointer_path = tmp_path / "bucket" / "ranker" / "_channels" / "prod.json"
    before = pointer_path.read_bytes()
    got, _, err = _release(url, *args)
    assert got == code, err
    # Usage errors are click's (usage line first); the rest are one line.
    lines = err.strip().splitlines()
    assert message in lines[-1] and (code == 2 or len(lines) == 1), err
    assert pointer_path.read_bytes() == before


def test_a_second_canary_waits_for_the_first(tmp_path: Path) -> None:
    url = _bucket(tmp_path)
    _release(url, "promote", "--version", "1")
    _release(url, "start", "2", "--percent", "5")
    code, _, err = _release(url, "start", "3", "--percent", "5")
    assert code == 1 and "canary 2 is in progress" in err


def test_a_concurrent_change_is_not_lost(tmp_path: Path) -> None:
    """Two operators: the one whose read went stale gets an error, the other's change stays."""
    url = _bucket(tmp_path)
    alice = Release(open_source(url), "ranker", "prod", "alice")
    bob = Release(open_source(url), "ranker", "prod", "bob")
    alice.promote(1)
    alice.start(2, 5.0, None, None)

    def alice_widens_while_bob_decides(pointer: Pointer | None, seq: int) -> Pointer:
        alice.set_percent(50.0)  # lands between bob's read and bob's write
        assert pointer is not None
        return pointer.model_copy(update={"canary": None})

    with pytest.raises(ChannelError, match="changed by someone else since it was read"):
        bob._update(alice_widens_while_bob_decides)
    pointer, _ = bob.read()
    assert pointer is not None and pointer.canary is not None
    assert (pointer.canary.percent, pointer.updated_by) == (50.0, "alice")


def test_release_needs_a_source(tmp_path: Path) -> None:
    done = run_cli("release", "status", "ranker")
    assert done.returncode == 2 and "give --config" in done.stderr


def _signing(tmp_path: Path) -> Path:
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    return tmp_path / "k.pem"


def _envelope(tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        (tmp_path / "bucket" / "ranker" / "_channels" / "prod.json").read_bytes()
    )
    return doc


def test_sign_key_writes_a_signed_pointer_with_seq_and_expiry(tmp_path: Path) -> None:
    """--sign-key: one signed envelope; each change raises seq; --expires sets the expiry;
    renew re-signs; without the key a signed pointer is not overwritten."""
    url, key = _bucket(tmp_path), _signing(tmp_path)
    sign = ("--sign-key", str(key))
    code, out, err = _release(url, "promote", "--version", "1", *sign, "--expires", "2h")
    assert code == 0 and "signed, seq" in out, err
    first = _envelope(tmp_path)
    assert set(first) == {"signed", "signatures"} and first["signed"]["stable"] == 1
    assert (first["signed"]["model"], first["signed"]["channel"]) == ("ranker", "prod")
    assert 7200 <= first["signed"]["expires"] - first["signed"]["updated_at"] < 7201
    assert _release(url, "start", "2", "--percent", "10", *sign)[0] == 0
    second = _envelope(tmp_path)
    assert second["signed"]["seq"] > first["signed"]["seq"]
    assert len(second["signed"]["canary"]["nonce"]) == 16
    assert _release(url, "renew", *sign)[0] == 0
    renewed = _envelope(tmp_path)
    assert renewed["signed"]["seq"] > second["signed"]["seq"]
    assert renewed["signed"]["canary"] == second["signed"]["canary"]
    code, _, err = _release(url, "set", "--percent", "50")
    assert code == 1 and "the pointer is signed: give --sign-key" in err
    assert len(err.strip().splitlines()) == 1 and _envelope(tmp_path) == renewed


def test_release_never_signs_a_pointer_it_cannot_vouch_for(tmp_path: Path) -> None:
    """A pointer a bucket writer edited is not signed again by a change; it can only be
    replaced (set --stable)."""
    url, key = _bucket(tmp_path), _signing(tmp_path)
    sign = ("--sign-key", str(key))
    _release(url, "promote", "--version", "2", *sign)
    path = tmp_path / "bucket" / "ranker" / "_channels" / "prod.json"
    doc = _envelope(tmp_path)
    doc["signed"]["stable"] = 1  # a bucket writer moves the fleet back
    path.write_text(json.dumps(doc))
    code, _, err = _release(url, "start", "3", "--percent", "10", *sign)
    assert code == 1 and "not signed by this key" in err and len(err.strip().splitlines()) == 1
    assert _release(url, "set", "--stable", "2", *sign)[0] == 0
    assert _envelope(tmp_path)["signed"]["stable"] == 2


def test_set_stable_older_needs_rollback(tmp_path: Path) -> None:
    """An older stable is refused without --rollback; with it the pointer says so."""
    url, key = _bucket(tmp_path), _signing(tmp_path)
    sign = ("--sign-key", str(key))
    _release(url, "promote", "--version", "3", *sign)
    code, _, err = _release(url, "set", "--stable", "1", *sign)
    assert code == 1 and "add --rollback" in err and len(err.strip().splitlines()) == 1
    code, _, err = _release(url, "promote", "--version", "1", *sign)
    assert code == 1 and "set --stable 1 --rollback" in err
    code, out, err = _release(url, "set", "--stable", "1", "--rollback", *sign)
    assert code == 0 and "rolled back" in out, err
    signed = _envelope(tmp_path)["signed"]
    assert (signed["stable"], signed["rollback_seq"]) == (1, signed["seq"])
    assert _release(url, "set", "--stable", "2", "--rollback", *sign)[0] == 1
    assert _release(url, "set", "--rollback", "--percent", "5")[0] == 2


def _halted(tmp_path: Path) -> str:
    """A channel whose canary 2 (nonce from its pointer) failed on host b."""
    url = _bucket(tmp_path)
    _release(url, "promote", "--version", "1")
    _release(url, "start", "2", "--percent", "100")
    pointer = Pointer.parse(
        (tmp_path / "bucket" / "ranker" / "_channels" / "prod.json").read_bytes(), "p"
    )
    info = ChannelInfo("prod", 1, 2, 100.0, True, False, 2, nonce=pointer.canary.nonce)  # type: ignore[union-attr]
    source = open_source(url)
    write_report(source, "ranker", 2, "a", "confirmed")
    write_report(source, "ranker", 2, "b", "rolled_back", "bad tensor shape", channel=info)
    # b's report is then overwritten "confirmed": the marker still counts.
    write_report(source, "ranker", 2, "b", "confirmed", channel=info)
    return url


def test_status_shows_a_halt_from_the_markers(tmp_path: Path) -> None:
    """status: HALTED with the rule and the failed hosts, in text and JSON, even after
    the failed host's report was overwritten with confirmed."""
    url = _halted(tmp_path)
    code, out, err = _release(url, "status")
    assert code == 0, err
    assert (
        "HALTED: canary 2 by rule failed_hosts: 1 hosts rolled it back or refused it "
        "(halt_after 1) (on_halt revert" in out
    )
    assert "failed: b" in out and "b: rolled_back: bad tensor shape" in out
    code, out, _ = _release(url, "status", "--json")
    doc = json.loads(out)
    assert doc["halted"] is True and doc["confirmed"] == ["a"]
    assert doc["halt"] == {
        "rule": "failed_hosts",
        "reason": "1 hosts rolled it back or refused it (halt_after 1)",
        "halt_after": 1,
        "halt_live": None,
        "on_halt": "revert",
        "failed_hosts": ["b"],
    }
    assert doc["failed"] == {"b": "rolled_back: bad tensor shape"}


def test_promote_refuses_a_halted_canary_unless_forced(tmp_path: Path) -> None:
    """promote on a halted canary: exit 1, one line, nothing written; --force promotes;
    --help says what --force does."""
    url = _halted(tmp_path)
    path = tmp_path / "bucket" / "ranker" / "_channels" / "prod.json"
    before = path.read_bytes()
    code, _, err = _release(url, "promote")
    assert code == 1 and "canary 2 is HALTED (rule failed_hosts: 1 hosts rolled it back" in err
    assert len(err.strip().splitlines()) == 1 and path.read_bytes() == before
    code, out, err = _release(url, "promote", "--force")
    assert code == 0 and "stable 2, no canary" in out, err
    done = run_cli("release", "promote", "--help")
    assert "--force" in done.stdout and "even when it is halted" in done.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("start", str(2**63), "--percent", "5"), 2, "VERSION"),
        (("start", "2", "--percent", "nan"), 2, "not a number from 0 to 100"),
        (("start", "2", "--percent", "inf"), 2, "--percent"),
        (("start", "2", "--percent", "5", "--halt-after", "9" * 400), 2, "--halt-after"),
        (("start", "2", "--percent", "5", "--expires", "1e400d"), 2, "--expires"),
        (("set", "--stable", "-1"), 2, "--stable"),
        (("set",), 2, "give --percent or --stable"),
        (("promote", "--version", "9" * 19), 2, "--version"),
    ],
)
def test_hostile_arguments_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    """Out-of-range numbers, NaN and infinities: exit 2 with click's message, no traceback."""
    url = _bucket(tmp_path)
    got, _, err = _release(url, *args)
    assert got == code and message in err and "Traceback" not in err, err


def test_a_nineteen_digit_version_is_a_version(tmp_path: Path) -> None:
    """A nanosecond timestamp (19 digits, up to MAX_VERSION) starts, reports and shows."""
    version = 2**63 - 1
    url = _bucket(tmp_path, (1, version))
    assert _release(url, "promote", "--version", "1")[0] == 0
    code, out, err = _release(url, "start", str(version), "--percent", "100")
    assert code == 0 and f"canary {version}" in out, err
    write_report(open_source(url), "ranker", version, "a", "rolled_back", "oom")
    code, out, err = _release(url, "status")
    assert code == 0 and "a: rolled_back: oom" in out, err


@pytest.mark.parametrize(
    "pointer",
    [
        b'{"stable": 1, "canary": {"version": 2, "percent": ' + b"9" * 400 + b"}}",
        b'{"stable": 1, "canary": {"version": 2, "percent": 1e400}}',
        b'{"stable": 1, "canary": {"version": 2, "percent": NaN}}',
        b'{"stable": 9223372036854775808}',
        b'{"stable": 1, "updated_by": "' + b"x" * 10_000 + b'"}',
        b'{"signed": {"stable": 1}, "signatures": [{"keyid": "' + b"0" * 64 + b'", "sig": "!"}]}',
    ],
)
def test_a_hostile_pointer_is_one_line_in_status(tmp_path: Path, pointer: bytes) -> None:
    """`release status` on a hostile pointer: exit 1, one line naming the object."""
    url = _bucket(tmp_path)
    path = tmp_path / "bucket" / "ranker" / "_channels" / "prod.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(pointer)
    code, _, err = _release(url, "status")
    assert code == 1 and "_channels/prod.json" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


_HOSTILE_ARGS = ["2", str(2**63 - 1), str(2**63), "9" * 400, "nan", "inf", "-inf", "1e400"]
_HOSTILE_ARGS += ["-0", "0x10", "1_000", "", " 5", "true", "5.5", "1e-400", "\x00"]
_ARGS = (
    st.sampled_from(_HOSTILE_ARGS)
    | st.integers().map(str)
    | st.floats().map(str)
    | st.text(max_size=12)
)


@pytest.fixture(scope="module")
def shared_bucket(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _bucket(tmp_path_factory.mktemp("generated"))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(version=_ARGS, percent=_ARGS, halt_after=_ARGS, expires=_ARGS)
def test_generated_arguments_never_give_a_traceback(
    shared_bucket: str,
    capsys: pytest.CaptureFixture[str],
    version: str,
    percent: str,
    halt_after: str,
    expires: str,
) -> None:
    """Generated VERSION, --percent, --halt-after and --expires values (in process, the
    CLI's own entry point): exit 0, 1 with one line, or 2; never an exception."""
    argv = ["release", "start", "ranker", version, "--percent", percent]
    argv += ["--halt-after", halt_after, "--expires", expires]
    argv += ["--source", shared_bucket, "--channel", "prod"]
    # main() hides `rich` from structlog in sys.modules: undone for the other tests.
    with mock.patch.dict(sys.modules), pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code in (0, 1, 2), err
    assert exc.value.code != 1 or len(err.strip().splitlines()) == 1, err
