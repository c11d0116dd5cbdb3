"""Configuration: the file, its overrides, its validation and how it is read."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from modelsync.config import load_config
from modelsync.errors import ConfigError

GOOD = """
store = "/models"
interval = "5m"
[[models]]
name = "ranker"
source = "file:///srv/bucket/ranker"
keep = 3
[[models]]
name = "embedder"
source = "file:///srv/bucket/embedder"
max_bytes = "2GiB"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "modelsync.toml"
    path.write_text(text)
    return path


def test_good_file_loads_with_defaults(tmp_path: Path) -> None:
    """A valid file gives typed values and DESIGN.md defaults."""
    config = load_config(_write(tmp_path, GOOD))
    assert config.interval == 300
    assert config.pass_timeout == 1800
    assert config.state_path == Path("/.modelsync-models")  # beside the store, not in it
    assert [m.name for m in config.models] == ["ranker", "embedder"]
    assert config.model("ranker").keep == 3
    assert config.model("embedder").keep == 2
    assert config.model("embedder").max_bytes == 2 * 2**30


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    """Flags and environment values override the file's keys."""
    config = load_config(
        _write(tmp_path, GOOD), {"store": "/other", "interval": "30s", "model": "ranker", "keep": 5}
    )
    assert config.store == Path("/other")
    assert config.interval == 30
    assert config.model("ranker").keep == 5
    assert config.model("ranker").source == "file:///srv/bucket/ranker"


def test_flags_alone_define_one_model() -> None:
    """A sidecar needs no file: --store, --model and --source suffice."""
    config = load_config(None, {"store": "/m", "model": "x", "source": "file:///b/x/"})
    assert [(m.name, m.source) for m in config.models] == [("x", "file:///b/x")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "colour = 'blue'\n", "colour: unknown key"),
        (
            GOOD.replace("keep = 3", 'keep = "three"'),
            "models[0].keep: Input should be a valid integer",
        ),
        (GOOD.replace("keep = 3", "keep = 0"), "models[0].keep"),
        (GOOD.replace("keep = 3", "kept = 3"), "models[0].kept: unknown key"),
        (
            GOOD.replace('source = "file:///srv/bucket/ranker"\n', ""),
            "models[0].source: Field required",
        ),
        (GOOD.replace("file:///srv", "ftp://srv"), "models[0].source: unsupported source URL"),
        (
            GOOD.replace("keep = 3", "keep = 3\nsource_options = {range_size = 5}"),
            "models[0]: source_options.range_size",
        ),
        (
            GOOD.replace("file:///srv", "s3://srv").replace(
                "keep = 3", 'keep = 3\nsource_options = {endpoint_url = "ftp://x"}'
            ),
            "source_options.endpoint_url: String should match",
        ),
        (GOOD.replace("file:///srv", "file://srv"), "absolute path"),
        (GOOD.replace('"5m"', '"soon"'), "interval"),
        (GOOD.replace('name = "embedder"', 'name = "ranker"'), "configured twice"),
        (GOOD.replace('name = "embedder"', 'name = "../etc"'), "models[1].name"),
        (GOOD.replace('store = "/models"', 'store = "models"'), "absolute path"),
        (GOOD.replace('store = "/models"\n', ""), "store: missing"),
        ("store = [", "invalid TOML"),
        ('store = "/m"\n', "no model configured"),
        (
            GOOD.replace("keep = 3", 'keep = 3\nserver = "torchserve"'),
            "unknown server 'torchserve'",
        ),
        (
            GOOD.replace("keep = 3", 'keep = 3\nserver = "triton"\nserver_options = {mode = "x"}'),
            "server_options.mode: Input should be 'explicit' or 'poll'",
        ),
        (
            GOOD.replace("keep = 3", 'keep = 3\nserver = "mlserver"\nserver_options = {a = 1}'),
            "server_options.a: unknown key",
        ),
        (
            GOOD.replace("keep = 3", 'keep = 3\nserver_url = "127.0.0.1:8000"'),
            "models[0].server_url",
        ),
        (
            GOOD.replace("keep = 3", 'keep = 3\nmodel_files = ["../x"]'),
            "model_files",
        ),
        # A model-level file a server could read as a version directory name.
        (
            GOOD.replace("keep = 3", 'keep = 3\nmodel_files = ["09"]'),
            "model_files: '09' must be a plain file name",
        ),
        (
            GOOD.replace("keep = 3", 'keep = 3\nmodel_files = [" 9"]'),
            "model_files: ' 9' must be a plain file name",
        ),
        (GOOD.replace("keep = 3", "keep = 3\nunknown_attempts = 0"), "unknown_attempts"),
        (
            GOOD.replace('store = "/models"', 'store = "/models"\nstate_dir = "/models/.state"'),
            "overlaps the served tree /models",
        ),
        (GOOD.replace('store = "/models"', 'store = "/"'), "store cannot be the root"),
        (GOOD.replace('"5m"', '"nan"'), "interval"),
        (GOOD.replace('"5m"', "inf"), "finite"),
        (GOOD.replace('"5m"', '"365000d"'), "longer than 366d"),
        (GOOD + '[admin]\nlisten = ":99999"\n', "port 99999 is not between 1 and 65535"),
        (GOOD.replace("file:///srv", "file:///s%00rv"), "contains a NUL"),
        (
            GOOD.replace(
                "keep = 3",
                'keep = 3\nnotify = {method = "signal", pidfile = "/p", signal = "SIG_BLOCK"}',
            ),
            "unknown signal 'SIG_BLOCK'",
        ),
    ],
)
def test_bad_files_name_the_key_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    """Every bad config fails with one line naming the file and the key."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(str(path))
    assert message in line


def test_missing_file_and_unknown_model(tmp_path: Path) -> None:
    """A missing file and an unknown --model are configuration errors."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="no model named 'nope'"):
        load_config(_write(tmp_path, GOOD), {"model": "nope"})
    with pytest.raises(ConfigError, match="need --model"):
        load_config(None, {"store": "/m", "source": "file:///b"})


def test_the_shipped_example_config_loads() -> None:
    """config/modelsync.toml is valid configuration as shipped."""
    from tests.helpers import REPO

    config = load_config(REPO / "config" / "modelsync.toml")
    assert config.models[0].notify.method == "signal"
    assert config.state_path == Path("/data/.modelsync-models")


def _run_limited(*args: str) -> subprocess.CompletedProcess[str]:
    """`modelsync ARGS` in a child with 3 GiB of address space and a 30 s limit: a
    config read that floods memory or blocks fails this test instead of the host."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "modelsync", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        preexec_fn=limit,  # only setrlimit, before exec: safe in a forked child
        check=False,
    )


def _huge(path: Path) -> None:
    with path.open("wb") as handle:
        handle.truncate(64 << 30)  # sparse: 64 GiB long, no disk used


def _loop(path: Path) -> None:
    path.symlink_to(path.name)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (os.mkfifo, "is a FIFO, not a regular file"),
        (_huge, "larger than 1 MiB"),
        (lambda p: p.write_bytes(b"#" * ((1 << 20) + 1)), "larger than 1 MiB"),
        (lambda p: p.symlink_to("/dev/zero"), "is a character device, not a regular file"),
        (Path.mkdir, "is a directory, not a regular file"),
        (_loop, "cannot read config file"),
    ],
    ids=["fifo", "sparse-64GiB", "one-byte-over", "link-to-dev-zero", "directory", "link-loop"],
)
def test_a_config_file_that_could_block_or_flood_is_refused_unread(
    tmp_path: Path, make: Callable[[Path], object], says: str
) -> None:
    """A FIFO, a huge (sparse) file, a device or a link loop as the config file: exit 2
    at once, one line naming the path and what is wrong; nothing is read from it."""
    path = tmp_path / "modelsync.toml"
    make(path)
    done = _run_limited("sync", "--config", str(path))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"config {path}: " in lines[0] and says in lines[0], lines[0]


def test_a_config_behind_configmap_links_is_read(tmp_path: Path) -> None:
    """Links are followed for the config (a Kubernetes ConfigMap mounts it as
    modelsync.toml -> ..data/modelsync.toml, ..data -> ..2026_1): it loads."""
    volume = tmp_path / "config"
    (volume / "..2026_1").mkdir(parents=True)
    (volume / "..2026_1" / "modelsync.toml").write_text(GOOD)
    (volume / "..data").symlink_to("..2026_1")
    (volume / "modelsync.toml").symlink_to("..data/modelsync.toml")
    config = load_config(volume / "modelsync.toml")
    assert [m.name for m in config.models] == ["ranker", "embedder"]


def test_a_link_to_a_fifo_is_refused_like_a_fifo(tmp_path: Path) -> None:
    """Following links never bypasses the rules: the file at the end of them is judged."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "modelsync.toml").symlink_to(tmp_path / "fifo")
    with pytest.raises(ConfigError, match="is a FIFO, not a regular file"):
        load_config(tmp_path / "modelsync.toml")


def test_toml_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    """1 MiB allows a nesting that exhausts tomllib's recursion: a one-line ConfigError
    (at a reload, anything else would end the daemon), not a RecursionError."""
    path = _write(tmp_path, "store = " + "[" * 200_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)
