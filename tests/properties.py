"""Properties over hostile input, shared by the tests and the reliability campaign.

Each ``check_*`` function takes one generated input and raises AssertionError when an
invariant breaks: hostile input is either refused with modelsync's own one-line
error, or accepted in a form that cannot reach outside its directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from modelsync.config import load_config
from modelsync.errors import ConfigError, ManifestError, ModelsyncError
from modelsync.manifest import Manifest, check_relpath
from modelsync.transfer import safe_join

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
MAX_VERSION = 2**63 - 1
# Values a hostile writer puts in a pointer or a report: numbers no float holds, no
# int64 holds, NaN and infinities, bools where numbers go, 19-digit versions (a
# nanosecond timestamp), huge strings, nesting (50,000 deep: raw bytes in the tests).
HOSTILE_SCALARS = (
    st.sampled_from(
        [
            MAX_VERSION,
            MAX_VERSION + 1,
            10**18,
            10**19 - 1,
            -1,
            0,
            10**400,
            -(10**400),
            True,
            False,
            None,
            float("nan"),
            float("inf"),
            -float("inf"),
            1e308,
            "x" * 100_000,
            "12",
            "",
            "\n\x00",
        ]
    )
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
)
HOSTILE = st.recursive(
    HOSTILE_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


PATH_PARTS = st.sampled_from(
    [
        "a",
        "..",
        ".",
        "",
        "variables",
        "x\\y",
        "/",
        "saved_model.pb",
        "\x00",
        "é",
        "modelsync-manifest.json",
    ]
)
PATHS = st.lists(PATH_PARTS, min_size=1, max_size=5).map("/".join) | st.text(max_size=30)
HASHES = st.sampled_from(["0" * 64, "f" * 64, "F" * 64, "", "xyz"]) | st.text(max_size=70)
FILES = st.lists(
    st.fixed_dictionaries({"path": PATHS, "size": st.integers(-5, 2**70) | JSON, "sha256": HASHES}),
    max_size=6,
)
MANIFESTS = st.fixed_dictionaries(
    {
        "format": st.sampled_from([1, 1, 1, 2, "1"]),
        "model": st.text(max_size=10) | JSON,
        "version": st.integers(-2, 2**64) | JSON,
        "created": st.sampled_from(["2026-11-01T00:00:00Z", "2026-11-01", "nope"]) | JSON,
        "files": FILES | JSON,
    },
    optional={
        "metrics": st.dictionaries(st.text(max_size=8), JSON, max_size=3),
        "metadata": JSON,
        "junk": JSON,
    },
)


def check_manifest_bytes(data: bytes) -> None:
    """Refused with ManifestError, or every path lands inside the revision."""
    try:
        manifest = Manifest.parse(data, "fuzz")
    except ManifestError as exc:
        assert "\n" not in str(exc)
        return
    root = Path("/srv/revision")
    for entry in manifest.files:
        joined = os.path.normpath(root / entry.path)
        assert joined.startswith(str(root) + "/"), entry.path
        assert entry.size >= 0 and len(entry.sha256) == 64


def check_manifest_doc(doc: dict[str, Any]) -> None:
    check_manifest_bytes(json.dumps(doc).encode())


def check_object_name(name: str) -> None:
    """A name is refused, or joining it (also through safe_join) stays inside the root."""
    try:
        path = check_relpath(name, "fuzz")
    except ManifestError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        assert os.path.normpath(root / path).startswith(str(root) + "/")
        safe_join(root, path)


CONFIG_KEYS = [
    "store",
    "state_dir",
    "interval",
    "jitter",
    "pass_timeout",
    "max_failures",
    "log_level",
    "nonsense",
]
MODEL_KEYS = ["name", "source", "keep", "max_bytes", "concurrency", "gate", "settle", "bogus"]
TOML_VALUES = (
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
    | st.integers(-10, 10**6)
    | st.booleans()
    | st.floats(-1e6, 1e6)
    | st.sampled_from(["/abs/store", "10m", "file:///b/m", "gs://b/m", "s3://x"])
)
CONFIGS = st.tuples(
    st.dictionaries(st.sampled_from(CONFIG_KEYS), TOML_VALUES, max_size=5),
    st.lists(st.dictionaries(st.sampled_from(MODEL_KEYS), TOML_VALUES, max_size=5), max_size=3),
)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def check_config(spec: tuple[dict[str, object], list[dict[str, object]]]) -> None:
    """Any config file loads into a Config or fails with a one-line ConfigError."""
    top, models = spec
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    for model in models:
        lines.append("[[models]]")
        lines += [f"{k} = {_toml(v)}" for k, v in model.items()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_text("\n".join(lines) + "\n")
        try:
            load_config(path)
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
        except ModelsyncError as exc:  # pragma: no cover - would be a wrong error type
            raise AssertionError(f"not a ConfigError: {exc!r}") from exc
