"""Smoke requests (modelsync.smoke, modelsync.sync.smoke): the file's format, the
comparison, and real `modelsync sync` passes against a scripted V2 server on loopback."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelsync.config import default_state_dir
from modelsync.smoke import SMOKE_FILE, difference, load_smoke
from tests.helpers import model_files, put_revision, run_cli
from tests.httpstub import Reply, http_stub

GOOD = {"outputs": [{"name": "Y", "data": [0.5, 0.71]}]}


def _smoke(*expected: float, tolerance: float = 0.01) -> bytes:
    body = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [0.0]}]}
    doc = {
        "format": 1,
        "requests": [
            {
                "name": "one row",
                "body": body,
                "expect": {"outputs": [{"data": list(expected)}]},
                "tolerance": tolerance,
            }
        ],
    }
    return json.dumps(doc).encode()


# -- the comparison ---------------------------------------------------------------


def test_a_matching_subset_within_tolerance_passes() -> None:
    """Keys the expectation does not name are ignored; numbers match within tolerance."""
    assert difference(GOOD, {"outputs": [{"data": [0.5, 0.705]}]}, 0.01) is None


def test_nan_where_a_number_is_expected_names_the_place() -> None:
    """NaN fails with the path, the value and the expectation with its tolerance."""
    answer = {"outputs": [{"data": [0.5, math.nan]}]}
    found = difference(answer, {"outputs": [{"data": [0.5, 0.71]}]}, 0.01)
    assert found == "outputs[0].data[1] = nan, expected 0.71 ± 0.01"


def test_nan_is_accepted_only_where_expected() -> None:
    """ "nan" in the expectation accepts NaN there and nothing else."""
    assert difference([math.nan], ["nan"], 0) is None
    assert difference([1.0], ["nan"], 0) == "[0] = 1.0, expected nan"


def test_wrong_shape_missing_key_and_wrong_type_are_differences() -> None:
    """A list of another length, a missing key and a string for a number each fail."""
    assert difference({"a": [1, 2]}, {"a": [1]}, 0) == "a has 2 elements, expected 1"
    assert difference({}, {"a": 1}, 0) == "a missing, expected 1"
    assert difference({"a": "1"}, {"a": 1}, 0) == 'a = "1", expected 1 ± 0'
    assert difference({"a": True}, {"a": 1}, 0) == "a = true, expected 1 ± 0"
    assert difference({"label": "cat"}, {"label": "dog"}, 0) == 'label = "cat", expected "dog"'


def test_malformed_smoke_files_are_one_line_errors_naming_file_and_key(tmp_path: Path) -> None:
    """Not JSON, a wrong format and a request without a body are each named."""
    assert load_smoke(tmp_path) is None
    cases = {
        b"{nope": "not JSON",
        b'{"format": 2, "requests": [{"body": {}}]}': "format",
        b'{"format": 1, "requests": [{"expect": 1}]}': "requests.0.body",
        b'{"format": 1, "requests": []}': "requests",
        b'{"format": 1, "requests": [{"body": {}, "expect": ' + b"[" * 40 + b"]" * 40 + b"}]}": (
            "nested deeper than 32 levels"
        ),
        b"[" * 100_000: "not JSON",
    }
    for raw, words in cases.items():
        (tmp_path / SMOKE_FILE).write_bytes(raw)
        with pytest.raises(ValueError) as caught:
            load_smoke(tmp_path)
        message = str(caught.value)
        assert SMOKE_FILE in message and words in message and "\n" not in message, message


# -- passes against a scripted V2 (Triton-like) server -------------------------------


def _v2_server(answers: dict[int, Callable[[], Reply]]) -> Callable[[str, str, bytes], Reply]:
    """Loads anything, reports every version READY, answers /versions/<v>/infer by
    ``answers[v]`` (a version without one answers 404)."""

    def answer(method: str, path: str, body: bytes) -> Reply:
        if path.endswith("/load"):
            return 200, b"{}"
        if path == "/v2/repository/index":
            index = [{"name": "ranker", "version": str(v), "state": "READY"} for v in range(1, 10)]
            return 200, json.dumps(index).encode()
        if path.startswith("/v2/models/ranker/versions/") and path.endswith("/infer"):
            version = int(path.split("/")[5])
            if version in answers:
                return answers[version]()
        return 404, b'{"error": "no such model"}'

    return answer


def _config(tmp_path: Path, store: Path, bucket: Path, url: str, smoke: str = "") -> Path:
    path = tmp_path / "modelsync.toml"
    path.write_text(
        f'store = "{store}"\n[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
        f'server = "triton"\nserver_url = "{url}"\n'
        '[models.confirm]\ntimeout = "10s"\nperiod = "0.05s"\n'
        f'[models.smoke]\ntimeout = "2s"\n{smoke}'
    )
    return path


def _status(config: Path) -> dict[str, object]:
    out = run_cli("status", "--json", "--config", str(config))
    assert out.returncode == 0, out.stderr
    report: dict[str, object] = json.loads(out.stdout)["models"][0]
    return report


def _live(report: dict[str, object], version: int) -> object:
    revisions = report["revisions"]
    assert isinstance(revisions, list)
    return next(r["live"] for r in revisions if r["version"] == version)


def _slow(seconds: float) -> Reply:
    time.sleep(seconds)
    return 200, b"{}"


def _ok(data: list[float]) -> Callable[[], Reply]:
    return lambda: (200, json.dumps({"outputs": [{"name": "Y", "data": data}]}).encode())


def test_smoke_passes_then_a_nan_revision_is_rolled_back_with_the_difference(
    tmp_path: Path, bucket: Path
) -> None:
    """v1 without a smoke file is served as before; v2's smoke requests reach
    /versions/2/infer with the file's body and pass; v3 answers NaN: rolled back,
    refused with the difference, v2 served again, the verdicts in status --json."""
    store = tmp_path / "data" / "models"
    answers = {
        2: _ok([0.71]),
        3: lambda: (200, b'{"outputs": [{"name": "Y", "data": [NaN]}]}'),
    }
    with http_stub(_v2_server(answers)) as (url, seen):
        config = _config(tmp_path, store, bucket, url)
        put_revision(bucket, 1, model_files(1))
        assert run_cli("sync", "--config", str(config)).returncode == 0
        assert not [p for _, p, _ in seen if p.endswith("/infer")]

        put_revision(bucket, 2, {**model_files(2), SMOKE_FILE: _smoke(0.71)})
        out = run_cli("sync", "--config", str(config))
        assert out.returncode == 0, out.stderr
        infer = [(p, b) for _, p, b in seen if p.endswith("/infer")]
        assert [p for p, _ in infer] == ["/v2/models/ranker/versions/2/infer"]
        assert json.loads(infer[0][1])["inputs"][0]["data"] == [0.0]

        put_revision(bucket, 3, {**model_files(3), SMOKE_FILE: _smoke(0.71)})
        started = time.monotonic()
        out = run_cli("sync", "--config", str(config))
        elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stderr
    assert elapsed < 30
    report = _status(config)
    assert report["active_version"] == 2
    refused = report["refused"]
    assert isinstance(refused, dict)
    assert refused["3"] == (
        "the server loaded it, but smoke requests failed: request 1 (one row): "
        "outputs[0].data[0] = nan, expected 0.71 ± 0.01"
    )
    assert _live(report, 2) == {"smoke": {"verdict": "passed", "requests": 1, "reason": ""}}
    live3 = _live(report, 3)
    assert isinstance(live3, dict) and live3["smoke"]["verdict"] == "failed"
    assert sorted(os.listdir(store / "ranker")) == ["2"]
    quarantined = default_state_dir(store) / "quarantine" / "ranker" / "3"
    assert (quarantined / SMOKE_FILE).read_bytes() == _smoke(0.71)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (lambda: (500, b'{"error": "Failed to process the request(s)"}'), "HTTP 500: Failed"),
        (lambda: _slow(4.0), "timed out after"),
        (lambda: (200, b"<html>"), "the answer is not JSON"),
        (_ok([0.9]), "outputs[0].data[0] = 0.9, expected 0.71 ± 0.01"),
        (lambda: (200, b"[" * 100_000 + b"]" * 100_000), "the answer is not JSON"),
        (lambda: (200, b"[" * 900 + b"]" * 900), "expected an object"),
    ],
    ids=["error", "timeout", "not-json", "wrong", "deeper-than-the-parser", "deep"],
)
def test_an_error_a_timeout_or_a_wrong_answer_rolls_back_and_refuses(
    tmp_path: Path, bucket: Path, answer: Callable[[], Reply], words: str
) -> None:
    """Each way a smoke request can fail refuses the revision with why; the previous
    revision is served again and the store holds only it."""
    store = tmp_path / "data" / "models"
    with http_stub(_v2_server({2: answer})) as (url, _seen):
        config = _config(tmp_path, store, bucket, url)
        put_revision(bucket, 1, model_files(1))
        assert run_cli("sync", "--config", str(config)).returncode == 0
        put_revision(bucket, 2, {**model_files(2), SMOKE_FILE: _smoke(0.71)})
        out = run_cli("sync", "--config", str(config))
    assert out.returncode == 1, out.stderr
    report = _status(config)
    assert report["active_version"] == 1
    refused = report["refused"]
    assert isinstance(refused, dict) and words in refused["2"], refused
    assert sorted(os.listdir(store / "ranker")) == ["1"]


def test_required_smoke_refuses_a_revision_without_one_or_with_a_bad_one(
    tmp_path: Path, bucket: Path
) -> None:
    """smoke.required: a revision without a smoke file is refused; so is a smoke file
    that does not parse, naming the key; both before the server is told of them."""
    store = tmp_path / "data" / "models"
    with http_stub(_v2_server({})) as (url, seen):
        config = _config(tmp_path, store, bucket, url, "required = true\n")
        put_revision(bucket, 1, {**model_files(1), SMOKE_FILE: b'{"format": 1, "requests": []}'})
        put_revision(bucket, 2, model_files(2))
        # Both in one pass: a revision refused on its way in lets the next older one
        # be tried at once; the next pass has nothing left to do.
        out = run_cli("sync", "--config", str(config))
        assert out.returncode == 1, out.stderr
        assert run_cli("sync", "--config", str(config)).returncode == 0
    refused = _status(config)["refused"]
    assert isinstance(refused, dict)
    assert refused["2"] == "no modelsync-smoke.json in the revision, and the model requires one"
    assert refused["1"].startswith("unusable smoke file: ") and "requests" in refused["1"]
    assert not [p for _, p, _ in seen if p.endswith("/load")]
    assert not (store / "ranker").exists() or os.listdir(store / "ranker") == []


def test_custom_server_smoke_url_template(tmp_path: Path, bucket: Path) -> None:
    """A custom server's smoke requests go to smoke.url with {model} and {version};
    required without a url is a configuration error (exit 2) naming the key."""
    store = tmp_path / "data" / "models"

    def answer(method: str, path: str, body: bytes) -> Reply:
        return 200, json.dumps({"outputs": [{"data": [0.71]}]}).encode()

    with http_stub(answer) as (url, seen):
        config = tmp_path / "custom.toml"
        config.write_text(
            f'store = "{store}"\n[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
            f'[models.smoke]\nurl = "{url}/predict/{{model}}/v{{version}}"\n'
        )
        put_revision(bucket, 4, {**model_files(4), SMOKE_FILE: _smoke(0.71)})
        out = run_cli("sync", "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert [p for _, p, _ in seen] == ["/predict/ranker/v4"]
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'store = "{store}"\n[[models]]\nname = "ranker"\nsource = "file://{bucket}"\n'
        "[models.smoke]\nrequired = true\n"
    )
    out = run_cli("sync", "--config", str(bad))
    assert out.returncode == 2
    assert "smoke.required" in out.stderr and "smoke.url" in out.stderr


def test_killed_mid_smoke_the_next_pass_rolls_back_safely(tmp_path: Path, bucket: Path) -> None:
    """kill -9 while a smoke request waits: the journal keeps the activation; the next
    pass asks the server, sends the smoke requests again, and rolls back on their
    failure: v1 is served, v2 refused, nothing of v2 left in the served tree."""
    store = tmp_path / "data" / "models"
    hang = {"on": True}

    def slow_then_wrong() -> Reply:
        if hang["on"]:
            time.sleep(30)
        return 200, json.dumps({"outputs": [{"data": [0.0]}]}).encode()

    with http_stub(_v2_server({2: slow_then_wrong})) as (url, seen):
        config = _config(tmp_path, store, bucket, url).read_text().replace('"2s"', '"60s"')
        path = tmp_path / "slow.toml"
        path.write_text(config)
        put_revision(bucket, 1, model_files(1))
        assert run_cli("sync", "--config", str(path)).returncode == 0
        put_revision(bucket, 2, {**model_files(2), SMOKE_FILE: _smoke(0.71)})
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelsync", "sync", "--config", str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not [p for _, p, _ in seen if p.endswith("/infer")]:
            assert time.monotonic() < deadline, "the smoke request never came"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        state = json.loads((default_state_dir(store) / "state" / "ranker.json").read_text())
        assert state["pending"]["version"] == 2 and state["pending"]["phase"] == "activating"
        assert (store / "ranker" / "2").is_dir()
        hang["on"] = False
        out = run_cli("sync", "--config", str(path))
    assert out.returncode == 1, out.stderr
    report = _status(config=path)
    assert report["active_version"] == 1 and report["pending"] is None
    refused = report["refused"]
    assert isinstance(refused, dict) and "expected 0.71 ± 0.01" in refused["2"]
    assert sorted(os.listdir(store / "ranker")) == ["1"]
