"""Channel pointers, cohorts and the halt decision (modelsync.channel)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelsync.channel import (
    Canary,
    Pointer,
    cohort_score,
    default_identity,
    in_cohort,
    target_of,
)
from modelsync.errors import ChannelError
from modelsync.sources.control import check_control_key
from tests.properties import HOSTILE

HOSTS = [f"pod-{i:05d}" for i in range(10_000)]


def test_pointer_round_trip_and_defaults() -> None:
    pointer = Pointer.parse(b'{"stable": 3, "canary": {"version": 4, "percent": 20}}', "p")
    assert pointer.stable == 3
    assert pointer.canary == Canary(version=4, percent=20.0)
    assert (pointer.halt_after, pointer.on_halt) == (1, "revert")
    assert Pointer.parse(pointer.to_bytes(), "p") == pointer


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "p: channel pointer is not JSON"),
        (b"[1]", "p: channel pointer: (top level)"),
        (b'{"stable": "3"}', "p: channel pointer: stable:"),
        (b'{"stable": 0}', "p: channel pointer: stable:"),
        (b'{"stable": true}', "p: channel pointer: stable:"),
        (b'{"stable": 3, "canary": {"version": 4, "percent": 101}}', "canary.percent"),
        (b'{"stable": 3, "canary": {"version": 3, "percent": 5}}', "canary is the stable version"),
        (b'{"stable": 3, "on_halt": "panic"}', "on_halt"),
        (b'{"stable": 3, "halt_after": 0}', "halt_after"),
        (b'{"stable": 3, "extra": 1}', "extra: unknown key"),
        (b"[" * 100_000, "p: channel pointer is not JSON"),
    ],
)
def test_hostile_pointers_are_one_line_errors(raw: bytes, message: str) -> None:
    with pytest.raises(ChannelError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        Pointer.parse(raw, "p")
    assert "\n" not in str(exc.value)


def test_cohort_is_stable_as_the_percentage_grows() -> None:
    """A host in the cohort at 10 % is in it at 20 %, 50 % and 100 %."""
    previous: set[str] = set()
    for percent in (1, 10, 20, 50, 100):
        canary = Canary(version=7, percent=percent)
        cohort = {h for h in HOSTS if in_cohort("ranker", canary, h)}
        assert previous <= cohort
        previous = cohort
    assert previous == set(HOSTS)
    assert not any(in_cohort("ranker", Canary(version=7, percent=0), h) for h in HOSTS)


@pytest.mark.parametrize("percent", [1.0, 5.0, 20.0, 50.0])
def test_cohort_share_matches_the_percentage(percent: float) -> None:
    """Within 4 standard deviations of the binomial (10,000 hosts)."""
    p = percent / 100
    share = sum(in_cohort("ranker", Canary(version=9, percent=percent), h) for h in HOSTS)
    sigma = math.sqrt(len(HOSTS) * p * (1 - p))
    assert abs(share - len(HOSTS) * p) < 4 * sigma, (share, len(HOSTS) * p)


def test_each_canary_and_model_picks_its_own_cohort() -> None:
    def cohort(model: str, version: int) -> set[str]:
        return {h for h in HOSTS if in_cohort(model, Canary(version=version, percent=10), h)}

    a, b, c = cohort("ranker", 9), cohort("ranker", 10), cohort("recall", 9)
    # Independent 10 % draws overlap by about 1 %, not 10 %.
    assert len(a & b) < 200 and len(a & c) < 200
    assert 0 <= cohort_score("ranker", 9, "pod-1") < 100


def test_target_of() -> None:
    host = next(h for h in HOSTS if in_cohort("m", Canary(version=5, percent=20), h))
    other = next(h for h in HOSTS if not in_cohort("m", Canary(version=5, percent=20), h))
    canary = Pointer(stable=4, canary=Canary(version=5, percent=20))
    assert target_of(Pointer(stable=4), "m", host, 3, False).version == 4
    assert target_of(canary, "m", host, 4, False).version == 5
    assert target_of(canary, "m", other, 4, False).version == 4
    halted = target_of(canary, "m", host, 5, True)
    assert (halted.version, halted.halted) == (4, True)
    hold = canary.model_copy(update={"on_halt": "hold"})
    assert target_of(hold, "m", host, 5, True).version == 5  # an adopter stays
    assert target_of(hold, "m", host, 4, True).version == 4  # nobody else adopts
    patient = canary.model_copy(update={"halt_after": 3})
    assert target_of(patient, "m", host, 4, False).version == 5
    assert target_of(patient, "m", host, 5, True).version == 4
    assert target_of(Pointer(), "m", host, None, False).version is None


def test_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSYNC_IDENTITY", "pod-7")
    assert default_identity() == "pod-7"
    assert default_identity("from-config") == "from-config"
    monkeypatch.setenv("MODELSYNC_IDENTITY", "../etc")
    with pytest.raises(ChannelError, match=r"identity '\.\./etc'"):
        default_identity()
    monkeypatch.delenv("MODELSYNC_IDENTITY")
    host = default_identity()
    assert host and "/" not in host


_FIELDS = ["stable", "canary", "halt_after", "on_halt", "updated_by", "updated_at", "seq"]
_FIELDS += ["expires", "model", "channel", "rollback_seq", "extra"]
_CANARY = st.fixed_dictionaries(
    {}, optional={"version": HOSTILE, "percent": HOSTILE, "nonce": HOSTILE, "x": HOSTILE}
)
_POINTERS = st.dictionaries(
    st.sampled_from(_FIELDS), HOSTILE | _CANARY, max_size=6
) | st.fixed_dictionaries({"stable": HOSTILE, "canary": _CANARY})


def _parses_or_one_line(raw: bytes) -> None:
    try:
        pointer = Pointer.parse(raw, "p")
    except ChannelError as exc:
        message = str(exc)
        assert message.startswith("p: ") and "\n" not in message and len(message) < 1000
        return
    # Accepted: every number is in range and the pointer writes back as it reads.
    assert pointer.stable is None or 1 <= pointer.stable <= 2**63 - 1
    if pointer.canary is not None:
        assert 0 <= pointer.canary.percent <= 100
    assert Pointer.parse(pointer.to_bytes(), "p") == pointer


@settings(max_examples=400, deadline=None)
@given(doc=_POINTERS, signed=st.booleans())
def test_generated_hostile_pointers_parse_or_fail_in_one_line(
    doc: dict[str, object], signed: bool
) -> None:
    """Generated pointers (bare or in an envelope) with huge ints, NaN, inf, bools, wrong
    types, 19-digit and MAX_VERSION+1 versions: a Pointer or one ChannelError line."""
    value: object = {"signed": doc, "signatures": []} if signed else doc
    _parses_or_one_line(json.dumps(value).encode())


@pytest.mark.parametrize(
    "raw",
    [
        b'{"stable": 1, "canary": {"version": 2, "percent": ' + b"9" * 400 + b"}}",
        b'{"stable": 1, "canary": {"version": 2, "percent": ' + b"9" * 5000 + b"}}",
        b'{"stable": 1, "canary": {"version": 2, "percent": -1e400}}',
        b'{"stable": 1, "updated_at": 1e400}',
        b'{"stable": 1, "canary": {"version": 2, "percent": Infinity}}',
        b'{"stable": 1, "canary": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"stable": 9223372036854775808}',
        b'{"stable": 1, "seq": 9223372036854775808}',
        b'{"signed": ' + b"[" * 50_000 + b"]" * 50_000 + b', "signatures": []}',
        b'{"signed": {"stable": 1}, "signatures": [' + b'{"keyid": "a", "sig": "b"},' * 9 + b"1]}",
        b'{"signed": {"stable": 1}}',
        b'{"\\n\\u001b[31m": 1}',
    ],
)
def test_hostile_numbers_and_shapes_are_one_line(raw: bytes) -> None:
    """The values that gave tracebacks (a 400-digit percent) and their relatives."""
    with pytest.raises(ChannelError):
        Pointer.parse(raw, "p")
    _parses_or_one_line(raw)


def test_nineteen_digit_versions_are_versions() -> None:
    """MAX_VERSION (19 digits) is a version; MAX_VERSION + 1 is refused in one line."""
    pointer = Pointer.parse(b'{"stable": 9223372036854775807}', "p")
    assert pointer.stable == 2**63 - 1
    assert check_control_key("_reports/9223372036854775807/failed/pod-a.json")
    assert check_control_key(f"_reports/{2**63 - 1}/failed/0123456789abcdef/pod-a.json")
    with pytest.raises(ValueError):
        check_control_key(f"_reports/{10**19}/a.json")
