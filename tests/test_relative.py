"""modelsync.sync.policy.relative: a host judges a newer revision against the one it
serves and the baseline ([models.gates]), through real `modelsync sync` and `status`."""

from __future__ import annotations

import json
from pathlib import Path

from modelsync.publish import publish
from tests.helpers import run_cli, write_tree


def _config(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "modelsync.toml"
    path.write_text(
        f'store = "{tmp_path}/models"\n'
        "[[models]]\n"
        f'name = "ranker"\nsource = "{url}"\n'
        "[models.gates]\n"
        'rules = ["ndcg@10 >= production - 0.005", "ndcg@10 >= baseline + 0.02"]\n'
        f"baseline = 1\n{extra}"
    )
    return path


def _publish(tmp_path: Path, url: str, version: int, metrics: dict[str, float]) -> None:
    src = write_tree(tmp_path / f"src{version}", {"model.bin": b"v%d" % version})
    publish(src, url, version=version, metrics=metrics)


def _status(config: Path) -> dict[str, object]:
    done = run_cli("status", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    model: dict[str, object] = json.loads(done.stdout)["models"][0]
    return model


def test_a_worse_revision_is_refused_and_a_better_one_served(tmp_path: Path) -> None:
    """Against the served revision 2: 3 falls too far and is refused with the rule and
    both values; 4 is better and is served; status shows rule, candidate, production
    and baseline side by side."""
    url = f"file://{tmp_path}/bucket/ranker"
    _publish(tmp_path, url, 1, {"ndcg@10": 0.39})
    _publish(tmp_path, url, 2, {"ndcg@10": 0.42})
    config = _config(tmp_path, url)
    assert run_cli("sync", "--config", str(config)).returncode == 0
    assert (tmp_path / "models/ranker/current").readlink() == Path("2")
    _publish(tmp_path, url, 3, {"ndcg@10": 0.40})
    done = run_cli("sync", "--config", str(config))
    assert (tmp_path / "models/ranker/current").readlink() == Path("2")
    model = _status(config)
    reason = model["refused"]["3"]  # type: ignore[index]
    assert reason == (
        f"{url}/3: gate 'ndcg@10 >= production - 0.005': candidate ndcg@10 = 0.4 < 0.415 "
        "(production 2: 0.42); gate 'ndcg@10 >= baseline + 0.02': candidate ndcg@10 = 0.4 "
        "< 0.41 (baseline 1: 0.39)"
    ), done.stderr
    gates = model["gates"]
    assert gates["last"]["candidate_version"] == 3  # type: ignore[index]
    _publish(tmp_path, url, 4, {"ndcg@10": 0.43})
    assert run_cli("sync", "--config", str(config)).returncode == 0
    assert (tmp_path / "models/ranker/current").readlink() == Path("4")
    last = _status(config)["gates"]["last"]  # type: ignore[index]
    assert (last["candidate_version"], last["production_version"], last["baseline_version"]) == (
        4,
        2,
        1,
    )
    assert [
        (c["candidate"], c["production"], c["baseline"], c["passed"]) for c in last["checks"]
    ] == [
        (0.43, 0.42, 0.39, True),
        (0.43, 0.42, 0.39, True),
    ]


def test_a_missing_baseline_fails_the_pass_and_refuses_nothing(tmp_path: Path) -> None:
    """A baseline revision that is not there fails the pass (exit 1, one line): the
    candidate is not refused, and is served once the baseline is published."""
    url = f"file://{tmp_path}/bucket/ranker"
    _publish(tmp_path, url, 2, {"ndcg@10": 0.42})
    config = _config(tmp_path, url)
    done = run_cli("sync", "--config", str(config))
    assert done.returncode == 1
    assert "the gate's baseline revision is not complete" in done.stderr
    assert _status(config)["refused"] == {}
    _publish(tmp_path, url, 1, {"ndcg@10": 0.39})
    assert run_cli("sync", "--config", str(config)).returncode == 0
    assert (tmp_path / "models/ranker/current").readlink() == Path("2")


def test_if_missing_pass_accepts_a_revision_without_the_metric(tmp_path: Path) -> None:
    """With if_missing = "pass", a candidate without the metric is served; with the
    default it is refused naming the side that lacks it."""
    url = f"file://{tmp_path}/bucket/ranker"
    _publish(tmp_path, url, 1, {"ndcg@10": 0.39})
    _publish(tmp_path, url, 2, {"recall": 0.5})
    refusing = _config(tmp_path, url)
    run_cli("sync", "--config", str(refusing))  # 1 as well fails its gate: nothing served
    assert "ndcg@10 is missing on the candidate" in _status(refusing)["refused"]["2"]  # type: ignore[index]
    passing = tmp_path / "passing.toml"
    passing.write_text(
        refusing.read_text().replace(str(tmp_path / "models"), str(tmp_path / "other"))
        + 'if_missing = "pass"\n'
    )
    assert run_cli("sync", "--config", str(passing)).returncode == 0
    assert (tmp_path / "other/ranker/current").readlink() == Path("2")
