"""When a canary stops fleet-wide: a rule over the hosts that reported it failed.

Every sidecar applies the same rule to the same listing of failure markers, so the
fleet halts together without a controller. A rule is one class with ``halted``;
the pointer carries its parameters (``halt_after``).
"""

from __future__ import annotations

from collections.abc import Set
from typing import Protocol

from modelsync.channel import Pointer

__all__ = ["FailedHosts", "HaltRule"]


class HaltRule(Protocol):
    name: str

    def halted(self, pointer: Pointer, failed: Set[str]) -> bool:
        """Whether the pointer's canary stops, given the identities of the hosts with a
        failure marker for it."""
        ...


class FailedHosts:
    """Halt once ``halt_after`` hosts reported the canary rolled back or refused."""

    name = "failed_hosts"

    def halted(self, pointer: Pointer, failed: Set[str]) -> bool:
        return len(failed) >= pointer.halt_after
