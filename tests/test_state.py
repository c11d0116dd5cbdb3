"""The state file is read as strictly as the configuration, and a bad one fails passes
(counted, max_failures applies) until it is repaired (issue 11 findings 6 and 16)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from modelsync.config import default_state_dir
from modelsync.errors import StoreError
from modelsync.state import ModelState, Pending
from tests.daemonproc import DaemonProcess
from tests.helpers import check_invariants, model_files, put_revision, run_cli, sidecar_flags


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"pending": {"version": "../../outside", "previous": 1}}', "valid integer"),
        ('{"pending": {"version": 3, "previous": null, "phase": "boom"}}', "pending.phase"),
        ('{"refused": {"x": "y"}}', "not a map of versions"),
        # Keys int() reads but the one version grammar refuses (isdigit() took them).
        ('{"refused": {"09": "y"}}', "not a map of versions"),
        ('{"refused": {"\\u0669": "y"}}', "not a map of versions"),
        ('{"unknown": {"\\u00b2": 1}}', "not a map of versions"),
        ('{"pinned": -4}', "version -4"),
        ('{"pending": {"version": 1', "unreadable"),
        ("[" * 100_000, "unreadable"),
    ],
)
def test_bad_state_files_are_one_line_errors(tmp_path: Path, text: str, words: str) -> None:
    """Wrong types, ranges and shapes name the key; nothing is trusted half-way."""
    path = tmp_path / "ranker.json"
    path.write_text(text)
    with pytest.raises(StoreError, match=words) as info:
        ModelState.load(path)
    assert "\n" not in str(info.value) and "move it aside" in str(info.value)


def test_state_round_trips(tmp_path: Path) -> None:
    """What is saved loads back equal, journal included."""
    state = ModelState(refused={3: "bad"}, unknown={4: 1}, pending=Pending(5, 4, "rolling_back"))
    state.save(tmp_path / "s.json")
    assert ModelState.load(tmp_path / "s.json") == state


def test_a_truncated_state_file_fails_passes_until_repaired(
    tmp_path: Path, bucket: Path, procs: list[DaemonProcess]
) -> None:
    """The daemon keeps running, counts the failures (max_failures fires), and a one-shot
    sync after the repair works again."""
    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    assert run_cli("sync", *sidecar_flags(store, bucket)).returncode == 0
    state_file = default_state_dir(store) / "state" / "ranker.json"
    state_file.write_text(state_file.read_text()[:20])
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{store}"\nmax_failures = 2\n[[models]]\nname = "ranker"\n'
        f'source = "file://{bucket}"\n'
    )
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "log")
    procs.append(daemon)
    daemon.wait_for(lambda e: e.get("event") == "giving up", 60)
    assert daemon.proc.wait(10) == 1
    failed = [e for e in daemon.events() if e.get("event") == "sync failed"]
    assert len(failed) == 2 and "unreadable state file" in failed[0]["error"]
    os.remove(state_file)  # the repair: move it aside
    put_revision(bucket, 2, model_files(2))
    out = run_cli("sync", *sidecar_flags(store, bucket))
    assert out.returncode == 0, out.stderr
    assert check_invariants(store, "ranker").active == 2


def test_a_link_in_the_state_directory_is_never_followed(tmp_path: Path, bucket: Path) -> None:
    """<state_dir>/staging planted as a link to a directory elsewhere is removed (a work
    area: never followed, never kept); <state_dir>/revisions as a link stops the pass;
    the directory they point at is untouched either way (issue 11 finding 17)."""
    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    assert run_cli("sync", *sidecar_flags(store, bucket)).returncode == 0
    victim = tmp_path / "victim" / "ranker"
    victim.mkdir(parents=True)
    (victim / "precious").write_text("keep me")
    staging = default_state_dir(store) / "staging"
    if staging.exists():
        staging.rmdir()
    staging.symlink_to(victim.parent)
    put_revision(bucket, 2, model_files(2))
    out = run_cli("sync", *sidecar_flags(store, bucket))
    assert out.returncode == 0, out.stderr
    assert not staging.is_symlink() and check_invariants(store, "ranker").active == 2
    assert sorted(p.name for p in victim.iterdir()) == ["precious"]
    revisions = default_state_dir(store) / "revisions"
    aside = revisions.with_name("revisions.aside")
    revisions.rename(aside)
    revisions.symlink_to(victim.parent)
    out = run_cli("sync", *sidecar_flags(store, bucket))
    assert out.returncode == 1 and "is a symbolic link" in out.stderr
    assert (victim / "precious").read_text() == "keep me"
    assert json.loads(run_cli("status", "--json", *sidecar_flags(store, bucket)).stdout)


def test_history_is_bounded_and_survives_a_reload(tmp_path: Path) -> None:
    from modelsync.state import HISTORY_KEEP, HistoryEvent, ModelState

    state = ModelState()
    for version in range(1, HISTORY_KEEP + 51):
        state.record(float(version), "activated", version, version - 1 or None)
    state.record(9e9, "refused", 999, reason="gate: auc <script>")
    state.record_refused(999, "gate: auc <script>", {"auc": 0.1})
    path = tmp_path / "state.json"
    state.save(path)
    loaded = ModelState.load(path)
    assert len(loaded.history) == HISTORY_KEEP
    assert loaded.history[-1] == HistoryEvent(9e9, "refused", 999, None, "gate: auc <script>")
    assert loaded.history[0].version == 52
    assert loaded.refused_metrics == {999: {"auc": 0.1}}


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_a_state_file_that_never_ends_fails_sync_at_once(
    tmp_path: Path, bucket: Path, kind: str
) -> None:
    """The state file linked to /dev/zero, a FIFO nobody writes, or 5 MiB: `modelsync
    sync` exits 1 within seconds with one line naming the file."""
    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    assert run_cli("sync", *sidecar_flags(store, bucket)).returncode == 0
    state_file = default_state_dir(store) / "state" / "ranker.json"
    state_file.unlink()
    if kind == "dev-zero":
        state_file.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(state_file)
    else:
        state_file.write_text(" " * (5 << 20))
    started = time.monotonic()
    out = run_cli("sync", *sidecar_flags(store, bucket), timeout=30)
    assert time.monotonic() - started < 10
    assert out.returncode == 1, out.stderr
    line = out.stderr.strip()
    assert "\n" not in line and str(state_file) in line, line


def test_a_long_history_is_cut_when_read(tmp_path: Path) -> None:
    """A state file holding more than HISTORY_KEEP events loads with the newest only."""
    from modelsync.state import HISTORY_KEEP, ModelState

    path = tmp_path / "state.json"
    events = [
        {"at": float(i), "event": "activated", "version": i, "previous": None, "reason": ""}
        for i in range(1, HISTORY_KEEP * 3)
    ]
    path.write_text(json.dumps({"history": events}))
    loaded = ModelState.load(path)
    assert (
        len(loaded.history) == HISTORY_KEEP and loaded.history[-1].version == HISTORY_KEEP * 3 - 1
    )


def test_oms_admitted_file_sets_are_bounded_and_survive_a_reload(tmp_path: Path) -> None:
    """The record of admitted OMS file sets keeps the newest OMS_ADMITTED_KEEP versions,
    saved and loaded back; a hand-written longer one is cut when read."""
    from modelsync.state import OMS_ADMITTED_KEEP

    state = ModelState()
    for version in range(1, OMS_ADMITTED_KEEP + 6):
        state.record_oms(version, f"{version:064x}")
    path = tmp_path / "state.json"
    state.save(path)
    loaded = ModelState.load(path)
    assert sorted(loaded.oms_admitted) == list(range(6, OMS_ADMITTED_KEEP + 6))
    assert loaded.oms_admitted[OMS_ADMITTED_KEEP + 5] == f"{OMS_ADMITTED_KEEP + 5:064x}"
    assert path.stat().st_size < 200_000
    path.write_text(json.dumps({"oms_admitted": {str(v): "f" for v in range(1, 3001)}}))
    assert min(ModelState.load(path).oms_admitted) == 3001 - OMS_ADMITTED_KEEP
    path.write_text(json.dumps({"oms_admitted": {"0": "f"}}))
    with pytest.raises(StoreError, match="'0' is not a version"):
        ModelState.load(path)


# The costliest printable character to store: JSON escapes it to 12 bytes (a surrogate pair).
_WIDE = "\U0001f600"


def test_every_cap_full_of_the_widest_text_stays_under_the_state_limit(tmp_path: Path) -> None:
    """Red team round 4a: every map and text a bucket or a server can grow, filled far
    past its cap with the character JSON stores widest and the longest versions, saves
    to a file under STATE_LIMIT that loads back, the highest versions kept."""
    from modelsync.gates import Verdict
    from modelsync.state import (
        LIVE_KEEP,
        METRIC_NAME_LIMIT,
        OMS_ADMITTED_KEEP,
        REASON_DROPPED,
        REFUSED_KEEP,
        REFUSED_METRICS_KEEP,
        REFUSED_METRICS_VERSIONS,
        REFUSED_VERSIONS_KEEP,
        STATE_LIMIT,
        ChannelInfo,
        Waiting,
    )
    from modelsync.verdicts import BakeVerdict, LiveChecks, SmokeVerdict

    top = 2**63 - 1
    huge = _WIDE * 20_000
    state = ModelState(last_error=huge, server_reason=huge, last_error_at=1e18)
    state.pending = Pending(top, top - 1, "rolling_back", reason=huge, verdict="unknown")
    state.waiting = Waiting(top, huge, 1e18)
    state.channel = ChannelInfo("stable", top, top, 100.0, True, True, top, halt_reason=huge)
    state.gate = Verdict(top, top, top, ())
    wide_name = _WIDE * (METRIC_NAME_LIMIT * 10)
    for i in range(REFUSED_KEEP + LIVE_KEEP):
        version = top - i
        metrics = {f"{n:04d}{wide_name}": -1.2345678901234567e-300 for n in range(60)}
        state.record_refused(version, huge, metrics)
        state.unknown[version] = 2**31
        state.record(1e18, "refused", version, top, huge)
        state.record_oms(version, "f" * 64)
        reason = _WIDE * 2000
        smoke = SmokeVerdict(verdict="failed", requests=10_000, reason=reason)
        state.record_live(
            version, LiveChecks(smoke=smoke, bake=BakeVerdict(verdict="failed", reason=reason))
        )
    for i in range(OMS_ADMITTED_KEEP):
        state.record_oms(top - i, "f" * 64)
    # Refusals below the kept reasons: the versions stay, their words do not.
    for i in range(REFUSED_KEEP, REFUSED_VERSIONS_KEEP + 50):
        state.record_refused(top - i, huge)
    path = tmp_path / "ranker.json"
    state.save(path)
    size = path.stat().st_size
    # Measured: 2.88 MB, about 1.3 MB to spare for what the configuration bounds (gate
    # rules, channel marks).
    assert size < STATE_LIMIT, size
    loaded = ModelState.load(path)
    assert sorted(loaded.refused) == [top - i for i in reversed(range(REFUSED_VERSIONS_KEEP))]
    words = [loaded.refused[top - i] for i in range(REFUSED_VERSIONS_KEEP)]
    assert all(len(w) > 400 for w in words[:REFUSED_KEEP])
    assert set(words[REFUSED_KEEP:]) == {REASON_DROPPED}
    assert sorted(loaded.oms_admitted)[0] == top - OMS_ADMITTED_KEEP + 1
    assert sorted(loaded.refused_metrics) == sorted(loaded.refused)[-REFUSED_METRICS_VERSIONS:]
    kept = loaded.refused_metrics[top]
    assert len(kept) == REFUSED_METRICS_KEEP
    assert all(len(name) <= METRIC_NAME_LIMIT for name in kept)
    assert len(loaded.live_checks) == LIVE_KEEP and len(loaded.unknown) == REFUSED_KEEP
    assert all(len(r) <= 500 for r in loaded.refused.values())
    assert loaded.last_error is not None and len(loaded.last_error) <= 500


def test_many_refused_revisions_keep_the_highest_and_a_later_good_one_is_served(
    tmp_path: Path, bucket: Path
) -> None:
    """Red team round 4a: more refused revisions than REFUSED_KEEP (each names another
    model) leave the state file with the words of the highest REFUSED_KEEP only, and
    every one of them still refused (none is read again); a good revision published
    above them is served by the next `sync`."""
    from modelsync.state import REASON_DROPPED, REFUSED_KEEP

    store = tmp_path / "data" / "models"
    put_revision(bucket, 1, model_files(1))
    assert run_cli("sync", *sidecar_flags(store, bucket)).returncode == 0
    count = REFUSED_KEEP + 20
    for version in range(2, count + 2):
        put_revision(bucket, version, {"a.bin": b"x"}, model="someone-else")
    out = run_cli("sync", *sidecar_flags(store, bucket), timeout=300)
    assert out.returncode == 1, out.stderr
    state_file = default_state_dir(store) / "state" / "ranker.json"
    refused = json.loads(state_file.read_text())["refused"]
    assert sorted(map(int, refused)) == list(range(2, count + 2))
    dropped = [v for v, reason in refused.items() if reason == REASON_DROPPED]
    assert sorted(map(int, dropped)) == list(range(2, count + 2 - REFUSED_KEEP))
    files = model_files(count + 2)
    put_revision(bucket, count + 2, files)
    again = run_cli("sync", *sidecar_flags(store, bucket), timeout=300)
    assert again.returncode == 0, again.stderr
    assert check_invariants(store, "ranker").active == count + 2
    assert (store / "ranker" / str(count + 2) / "saved_model.pb").read_bytes() == files[
        "saved_model.pb"
    ]
