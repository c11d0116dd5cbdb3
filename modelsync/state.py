"""Per-model bookkeeping that cannot be read off the store's layout.

What is *active* is never recorded here: it is the target of ``current`` on disk.
This file holds what the layout cannot say: refused versions, a manual pin, the
last outcome, and the journal of an activation in progress (``pending``), which is
what lets a pass after a crash finish or undo the interrupted one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelsync.errors import StoreError
from modelsync.fsutil import atomic_write_bytes

__all__ = ["ModelState", "Pending"]

Phase = Literal["activating", "rolling_back"]


@dataclass
class Pending:
    """An activation (or rollback) that started but has not been committed."""

    version: int
    previous: int | None
    phase: Phase = "activating"
    # "quarantine" for a revision the server refused; "cache" for a manual rollback.
    retire_to: Literal["quarantine", "cache"] = "quarantine"
    # Why it is rolled back, and whether the server said so ("failed") or gave no
    # verdict ("unknown"): journalled so that a rollback finished after a crash
    # still refuses (or counts) the revision.
    reason: str = ""
    verdict: Literal["failed", "unknown", ""] = ""
    # sha256 of the activated tree's manifest: recovery activates that tree only.
    manifest_sha256: str = ""


@dataclass
class ModelState:
    refused: dict[int, str] = field(default_factory=dict)
    pinned: int | None = None
    activated_at: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    rollback_failed: bool = False
    # False while the active revision stands without the server having confirmed it
    # (activated when no server answered: an init container); each pass asks again.
    confirmed: bool = True
    # Rollbacks without a verdict per version; at unknown_attempts it is refused.
    unknown: dict[int, int] = field(default_factory=dict)
    # What the server last said about a failure (its own words).
    server_reason: str | None = None
    pending: Pending | None = None

    @classmethod
    def load(cls, path: Path) -> ModelState:
        """The saved state, or a fresh one when none was saved yet."""
        try:
            doc: dict[str, Any] = json.loads(path.read_bytes())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path}: unreadable state file ({exc}); move it aside") from exc
        try:
            pending = doc.pop("pending", None)
            refused = {int(k): str(v) for k, v in doc.pop("refused", {}).items()}
            unknown = {int(k): int(v) for k, v in doc.pop("unknown", {}).items()}
            known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
            return cls(
                refused=refused,
                unknown=unknown,
                pending=Pending(**pending) if pending else None,
                **known,
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"{path}: malformed state file ({exc}); move it aside") from exc

    def save(self, path: Path) -> None:
        doc = asdict(self)
        doc["refused"] = {str(k): v for k, v in sorted(self.refused.items())}
        doc["unknown"] = {str(k): v for k, v in sorted(self.unknown.items())}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
