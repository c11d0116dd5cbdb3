"""What only az:// has: its two URL forms and its options (the shared contract is
tests/test_sources_contract.py and tests/test_sources_network.py, on Azurite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelsync.backends.az import AzureSource
from modelsync.errors import ConfigError
from modelsync.sources import backend_for, open_source
from tests.backends import AzureBackend
from tests.helpers import run_cli


@pytest.mark.parametrize(
    ("url", "account", "container", "prefix"),
    [
        ("az://acct/models/ranking/ranker", "acct", "models", "ranking/ranker"),
        ("az://acct/models", "acct", "models", ""),
        ("https://acct.blob.core.windows.net/models/ranker/", "acct", "models", "ranker"),
    ],
)
def test_both_url_forms_name_account_container_and_prefix(
    url: str, account: str, container: str, prefix: str
) -> None:
    assert backend_for(url).name == "az"
    source = open_source(url)
    assert isinstance(source, AzureSource)
    assert (source.account, source.container_name, source.prefix) == (account, container, prefix)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("az://acct", "names no account or container"),
        ("az://acct/models?sv=2020&sig=x", "no query"),
        ("https://example.com/models/ranker", "unsupported source URL"),
    ],
)
def test_bad_urls_are_one_line(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        open_source(url)
    assert "\n" not in str(info.value)


def test_connection_string_is_a_secret_in_errors(tmp_path: Path) -> None:
    """A config error never echoes the connection string (it holds the account key)."""
    config = tmp_path / "m.toml"
    config.write_text(
        f'store = "{tmp_path}/data/models"\n[[models]]\nname = "r"\n'
        'source = "az://acct/models/r"\n'
        'source_options = { connection_string = "AccountKey=hunter2", max_pool_connections = 0 }\n'
    )
    out = run_cli("sync", "--config", str(config))
    assert out.returncode == 2
    assert "source_options.max_pool_connections" in out.stderr
    assert "hunter2" not in out.stderr


def test_the_container_client_reads_through_the_deadline_layer(az_backend: AzureBackend) -> None:
    """_az_client's container client (connection string) lists and reads a blob on
    Azurite over the source's own pools: its connections are the deadline layer's
    (a pass's deadline can cut them)."""
    from modelsync.backends._az_client import container_client
    from modelsync.backends.az import AzureOptions
    from modelsync.transport.deadline import Deadlines

    az_backend.put("1/w.bin", b"weights")
    options = AzureOptions.model_validate(az_backend.options())
    connections = Deadlines()
    client = container_client(options, connections, "unused", az_backend.container, "az://x")
    names = [b.name for b in client.list_blobs(name_starts_with=az_backend.prefix)]
    assert names == [f"{az_backend.prefix}/1/w.bin"]
    blob = client.download_blob(f"{az_backend.prefix}/1/w.bin").readall()
    assert blob == b"weights"
    assert connections._classes, "no pool of the deadline layer was made"
