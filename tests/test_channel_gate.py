"""modelsync.channel_gate through the CLI: `publish --gate` and `release start --gate`
against the channel's stable revision and the baseline, refusing with nothing written."""

from __future__ import annotations

from pathlib import Path

from modelsync.publish import publish
from tests.helpers import run_cli, snapshot, write_tree

RULES = ("--gate", "ndcg@10 >= production - 0.005", "--gate", "ndcg@10 >= baseline + 0.02")


def _bucket(tmp_path: Path) -> str:
    """Baseline 1 (most popular items, ndcg 0.39) and stable 2 (ndcg 0.42) on channel prod."""
    url = f"file://{tmp_path}/bucket/ranker"
    for version, ndcg in ((1, 0.39), (2, 0.42)):
        src = write_tree(tmp_path / f"src{version}", {"model.bin": b"v%d" % version})
        publish(src, url, version=version, metrics={"ndcg@10": ndcg})
    done = run_cli("release", "promote", "ranker", "--version", "2", "--source", url,
                   "--channel", "prod")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return url


def test_publish_refuses_a_worse_model_with_nothing_written(tmp_path: Path) -> None:
    """A candidate more than the margin below stable exits 1 naming rule and values; the
    bucket is byte for byte as before."""
    url = _bucket(tmp_path)
    before = snapshot(tmp_path / "bucket")
    src = write_tree(tmp_path / "worse", {"model.bin": b"worse"})
    done = run_cli("publish", str(src), url, "--version", "3", "--metric", "ndcg@10=0.40",
                   *RULES, "--baseline", "1", "--channel", "prod")  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"modelsync: error: {url}: new revision: refused by its gate: gate 'ndcg@10 >= "
        "production - 0.005': candidate ndcg@10 = 0.4 < 0.415 (production 2: 0.42); gate "
        "'ndcg@10 >= baseline + 0.02': candidate ndcg@10 = 0.4 < 0.41 (baseline 1: 0.39)"
    )
    assert snapshot(tmp_path / "bucket") == before


def test_publish_accepts_a_better_model(tmp_path: Path) -> None:
    """A candidate that meets every rule is published as usual."""
    url = _bucket(tmp_path)
    src = write_tree(tmp_path / "better", {"model.bin": b"better"})
    done = run_cli("publish", str(src), url, "--version", "3", "--metric", "ndcg@10=0.43",
                   *RULES, "--baseline", "1", "--channel", "prod")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"
    assert (tmp_path / "bucket/ranker/3/model.bin").read_bytes() == b"better"


def test_publish_gate_usage_errors(tmp_path: Path) -> None:
    """A bad rule, a baseline rule without --baseline, or production without --channel
    exits 2 with one line, and nothing is written."""
    url = _bucket(tmp_path)
    before = snapshot(tmp_path / "bucket")
    src = write_tree(tmp_path / "m", {"model.bin": b"m"})
    for extra, words in (
        (["--gate", "ndcg@10 ~ 1"], "is not METRIC OP"),
        (["--gate", "ndcg@10 >= baseline"], "set baseline"),
        (["--gate", "ndcg@10 >= production"], "name the channel (--channel)"),
    ):
        done = run_cli("publish", str(src), url, "--metric", "ndcg@10=0.5", *extra)
        assert done.returncode == 2, (extra, done.stderr)
        assert words in done.stderr
    assert snapshot(tmp_path / "bucket") == before


def test_release_start_refuses_a_worse_canary(tmp_path: Path) -> None:
    """`release start --gate` judges VERSION's manifest metrics against stable: a worse
    one exits 1 and the pointer is unchanged; a better one becomes the canary."""
    url = _bucket(tmp_path)
    for version, ndcg in ((3, 0.40), (4, 0.44)):
        src = write_tree(tmp_path / f"src{version}", {"model.bin": b"v%d" % version})
        publish(src, url, version=version, metrics={"ndcg@10": ndcg})
    pointer = tmp_path / "bucket/ranker/_channels/prod.json"
    before = pointer.read_bytes()
    args = ("--percent", "10", *RULES, "--baseline", "1", "--source", url, "--channel", "prod")
    done = run_cli("release", "start", "ranker", "3", *args)
    assert done.returncode == 1
    assert "canary 3: refused by its gate: gate 'ndcg@10 >= production - 0.005'" in done.stderr
    assert "candidate ndcg@10 = 0.4 < 0.415 (production 2: 0.42)" in done.stderr
    assert pointer.read_bytes() == before
    done = run_cli("release", "start", "ranker", "4", *args)
    assert done.returncode == 0, done.stderr
    assert "canary 4 at 10 %" in done.stdout
