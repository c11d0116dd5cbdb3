"""The [[events]] configuration: every mistake is one line naming the key, exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import run_cli

_BAD = {
    'kind = "kafka"\nmodels = ["m"]': "events[0]: kind: unknown event source 'kafka'",
    'kind = "sqs"\nmodels = ["m"]': (
        "events[0]: options: give exactly one of queue_url and topic_arn"
    ),
    'kind = "sqs"\nmodels = ["nope"]\noptions = { queue_url = "http://x/q" }': (
        "events[0].models: no model named 'nope'"
    ),
    'kind = "sqs"\nmodels = ["m"]\noptions = { queue_url = "http://x/q", bogus = 1 }': (
        "events[0]: options.bogus: unknown key"
    ),
    'kind = "sqs"\nmodels = ["m"]\noptions = { queue_url = "http://x/q", wait = "60s" }': (
        "events[0]: options.wait:"
    ),
    'kind = "azure-queue"\nmodels = ["m"]\noptions = { queue = "qqq" }': (
        "events[0]: options: give exactly one of account_url and connection_string"
    ),
    'kind = "azure-queue"\nmodels = ["m"]\n'
    'options = { queue = "qqq", connection_string = "AccountName=x;AccountKey" }': (
        "events[0]: options: connection_string: not key=value pairs separated by ';'"
    ),
    'kind = "azure-queue"\nmodels = ["m"]\n'
    'options = { queue = "qqq", connection_string = "QueueSecondaryEndpoint=https://x" }': (
        "events[0]: options: connection_string: names neither AccountName nor QueueEndpoint"
    ),
    'kind = "sqs"\nmodels = ["local"]\noptions = { queue_url = "http://x/q" }': (
        "'local' reads a file:// source"
    ),
}


@pytest.mark.parametrize("events", list(_BAD))
def test_a_bad_events_table_is_one_line_and_exit_2(tmp_path: Path, events: str) -> None:
    """Unknown kind, missing or unknown options, a model not configured or on file://:
    the run refuses to start with one line naming events[i] and the key."""
    config = tmp_path / "c.toml"
    config.write_text(
        f'store = "{tmp_path / "store"}"\n'
        '[[models]]\nname = "m"\nsource = "s3://b/m"\n'
        f'[[models]]\nname = "local"\nsource = "file://{tmp_path / "bucket"}"\n'
        f"[[events]]\n{events}\n"
    )
    done = run_cli("run", "--config", str(config))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and _BAD[events] in lines[0], done.stderr
    assert not (tmp_path / "store").exists()


def test_push_md_documents_every_option_and_metric() -> None:
    """docs/push.md has a table per event source kind listing exactly its options,
    and its metrics table lists exactly the modelsync_events_* metrics."""
    from prometheus_client import CollectorRegistry

    from modelsync.events import KINDS
    from modelsync.events.hub import EventMetrics
    from tests.helpers import REPO

    text = (REPO / "docs" / "push.md").read_text()
    for kind, load in KINDS.items():
        section = text.split(f'### `kind = "{kind}"`', 1)[1].split("\n### ", 1)[0]
        documented = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))
        assert documented == set(load().options.model_fields), kind
    registry = CollectorRegistry()
    EventMetrics(registry)
    exposed = {f.name + ("_total" if f.type == "counter" else "") for f in registry.collect()}
    documented = set(re.findall(r"^\| `(modelsync_events_[a-z_]+)` \|", text, flags=re.M))
    assert documented == exposed
