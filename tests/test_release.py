"""`modelsync release`: the pointer changes, their refusals, and lost-update safety."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelsync.channel import Pointer
from modelsync.errors import ChannelError
from modelsync.publish import publish
from modelsync.release import Release
from modelsync.sources import open_source
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
