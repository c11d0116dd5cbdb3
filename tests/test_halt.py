"""Halt rules (modelsync/sync/policy/halt.py): when a canary stops fleet-wide."""

from __future__ import annotations

from modelsync.channel import Canary, Pointer
from modelsync.sync.policy.halt import FailedHosts


def test_failed_hosts_halts_at_halt_after() -> None:
    """The canary halts once ``halt_after`` distinct hosts failed it, not before."""
    pointer = Pointer(stable=1, canary=Canary(version=2, percent=20), halt_after=3)
    rule = FailedHosts()
    assert not rule.halted(pointer, {"a", "b"})
    assert rule.halted(pointer, {"a", "b", "c"})
    assert rule.halted(pointer, {"a", "b", "c", "d"})


def test_failed_hosts_default_halts_on_the_first_failure() -> None:
    """With the default ``halt_after = 1`` one failed host is enough; none is not."""
    pointer = Pointer(stable=1, canary=Canary(version=2, percent=20))
    assert FailedHosts().halted(pointer, {"a"})
    assert not FailedHosts().halted(pointer, set())
