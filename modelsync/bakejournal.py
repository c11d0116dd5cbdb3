"""The bake's journal: ``<state_dir>/bake/<model>.json``, written atomically.

What a bake needs to outlive the process: the bake in progress (its version, the
previous one, its window, the counters at the swap, the previous revision's figures,
and a failed verdict whose rollback is under way), samples of the active revision's
counters (the "before" window of the next bake), and the last verdicts (status page,
``status --json``). Read by the pass (modelsync.sync.bake) and by status; below both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelsync.errors import StoreError
from modelsync.fsutil import atomic_write_bytes, read_regular
from modelsync.manifest import MAX_VERSION, parse_version
from modelsync.metricsread import Totals
from modelsync.verdicts import BakeVerdict, WindowFigures

__all__ = ["Baking", "Journal", "journal_path_of"]

MAX_JOURNAL_BYTES = 4 * 1024 * 1024
# Verdicts kept for the status page (the newest versions').
VERDICTS_KEEP = 5
# Samples of the active revision kept for the "before" window.
HISTORY_KEEP = 32


def journal_path_of(state_path: Path, model: str) -> Path:
    """Beside the model's state file: ``<state_dir>/bake/<model>.json``."""
    return state_path.parent.parent / "bake" / f"{model}.json"


@dataclass
class Baking:
    version: int
    previous: int
    started_at: float
    ends_at: float
    start: Totals | None
    previous_figures: WindowFigures | None
    # "failed" once the verdict is taken and the rollback under way.
    verdict: str = ""
    reason: str = ""
    # The new revision's figures at the last scrape: what the status page shows mid-bake.
    figures: WindowFigures | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "previous": self.previous,
            "started_at": self.started_at,
            "ends_at": self.ends_at,
            "start": self.start.to_doc() if self.start else None,
            "previous_figures": (
                self.previous_figures.model_dump() if self.previous_figures else None
            ),
            "verdict": self.verdict,
            "reason": self.reason,
            "figures": self.figures.model_dump() if self.figures else None,
        }

    @classmethod
    def from_doc(cls, doc: Any) -> Baking:
        figures, now = doc.get("previous_figures"), doc.get("figures")
        return cls(
            version=_version(doc["version"]),
            previous=_version(doc["previous"]),
            started_at=float(doc["started_at"]),
            ends_at=float(doc["ends_at"]),
            start=Totals.from_doc(doc.get("start")),
            previous_figures=None if figures is None else WindowFigures.model_validate(figures),
            verdict=str(doc.get("verdict", "")),
            reason=str(doc.get("reason", "")),
            figures=None if now is None else WindowFigures.model_validate(now),
        )


@dataclass
class Journal:
    path: Path
    baking: Baking | None = None
    history: list[Totals] = field(default_factory=list)
    verdicts: dict[int, BakeVerdict] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, log: Any) -> Journal:
        """The journal at ``path`` (empty when there is none, or it cannot be read)."""
        journal = cls(path)
        try:
            doc = json.loads(read_regular(path, MAX_JOURNAL_BYTES))
            if doc.get("baking") is not None:
                journal.baking = Baking.from_doc(doc["baking"])
            journal.history = [t for t in map(Totals.from_doc, doc.get("history", [])) if t]
            journal.verdicts = {
                _version(v): BakeVerdict.model_validate(d)
                for v, d in doc.get("verdicts", {}).items()
            }
        except FileNotFoundError:
            pass
        except (
            StoreError,
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
        ) as exc:
            # A journal that cannot be read is started afresh: the bake in it (if any)
            # is over unjudged, and the revision stands as it would without a bake.
            log.warning("bake journal unreadable; starting afresh", path=str(path), error=str(exc))
        return journal

    def save(self) -> None:
        verdicts = sorted(self.verdicts.items())[-VERDICTS_KEEP:]
        doc = {
            "baking": self.baking.to_doc() if self.baking else None,
            "history": [t.to_doc() for t in self.history[-HISTORY_KEEP:]],
            "verdicts": {str(v): d.model_dump() for v, d in verdicts},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(doc, sort_keys=True).encode())


def _version(value: object) -> int:
    """A version as the journal holds it: a JSON integer, or an object key in the one
    version grammar (manifest.parse_version); ValueError for anything else (int()
    would take "09", " 9", 1.5 or true)."""
    if type(value) is int and 0 < value <= MAX_VERSION:
        return value
    version = parse_version(value) if isinstance(value, str) else None
    if version is None:
        raise ValueError(f"not a version: {value!r}")
    return version
