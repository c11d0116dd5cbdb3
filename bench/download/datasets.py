"""The revisions the benchmark downloads, and their bytes (seeded, so every round and
every store gets the same)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

MB = 1_000_000

# An LLM checkpoint's small files beside its shards (config, tokenizer, index...).
SMALL_FILES = {
    "config.json": 1_200,
    "generation_config.json": 300,
    "tokenizer.json": 2_100_000,
    "tokenizer_config.json": 50_000,
    "special_tokens_map.json": 600,
    "vocab.json": 1_000_000,
    "merges.txt": 500_000,
    "model.safetensors.index.json": 25_000,
    "README.md": 8_000,
    "LICENSE": 11_000,
    **{f"extra/eval-{i:02d}.json": 4_000 + i for i in range(10)},
}
CHANGED_SHARD = "model-00002-of-00003.safetensors"


@dataclass(frozen=True)
class Dataset:
    """One revision of one model: ``files`` maps a relative path to its size."""

    key: str  # short name, also the model's name
    label: str
    files: dict[str, int]
    backends: tuple[str, ...]
    version: int = 1
    # A second revision synced where the first one is: only ``changed`` differs.
    changed: str | None = None

    @property
    def model(self) -> str:
        """The model's name: an update is a new revision of the same model."""
        return self.key.removesuffix("-update")

    @property
    def total(self) -> int:
        return sum(self.files.values())

    @property
    def must_fetch(self) -> int:
        """Bytes that have to cross the network (the changed file of an update)."""
        return self.files[self.changed] if self.changed else self.total

    def seed(self, name: str) -> str:
        # The same bytes in both revisions of an update, but for the changed file.
        generation = self.version if name == self.changed else 1
        return f"{self.model}/{name}/{generation}"


def datasets(quick: bool, scale: float) -> list[Dataset]:
    """The benchmark's revisions; --quick shrinks them to seconds, --scale multiplies
    the counts and sizes of the full run."""
    if quick:
        small_n, mid_n, shard, large = 50, 10, 4 * MB, 8 * MB
    else:
        small_n, mid_n = round(1000 * scale), round(200 * scale)
        shard, large = round(1000 * MB * scale), round(256 * MB * scale)
    shards = {f"model-{i:05d}-of-00003.safetensors": shard for i in range(1, 4)}
    llm = {**shards, **SMALL_FILES}
    llm_label = f"3 x {shard // MB:,} MB + 20 small (LLM-shaped)"
    return [
        Dataset(
            "small",
            f"{small_n:,} x 100 KB",
            {f"part-{i:04d}": 100_000 for i in range(small_n)},
            ("gs",),
        ),
        Dataset(
            "mid",
            f"{mid_n:,} x 1 MB",
            {f"variables/shard-{i:04d}": MB for i in range(mid_n)},
            ("gs", "s3", "az"),
        ),
        Dataset("llm", llm_label, llm, ("gs",)),
        Dataset(
            "llm-update",
            "one shard of three changed",
            llm,
            ("gs",),
            version=2,
            changed=CHANGED_SHARD,
        ),
        Dataset("large", f"1 x {large // MB:,} MB", {"variables/data": large}, ("s3", "az")),
    ]


def write_tree(root: Path, data: Dataset) -> Path:
    """``data``'s files under ``root``, seeded random bytes."""
    for name, size in data.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(data.seed(name))
        with path.open("wb") as handle:
            left = size
            while left:
                step = min(left, 8 * 1024 * 1024)
                handle.write(rng.randbytes(step))
                left -= step
    return root
