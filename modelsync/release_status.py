"""How a channel's rollout is going, as `modelsync release status` reports it: who
confirmed, who failed and why, whether a halt rule halts the canary, the canary
hosts' live checks and their medians, and who has not reported yet."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from modelsync.channel import Pointer
from modelsync.reports import FAILED_OUTCOMES, Tally
from modelsync.sync.policy.halt import Evidence, cohort_figures, first_halt

__all__ = ["RolloutStatus"]


@dataclass(frozen=True)
class RolloutStatus:
    pointer: Pointer
    version: int | None  # the version counted: the canary's, else the stable one
    tally: Tally | None
    # Hosts known to the channel (they reported on the stable or the canary version)
    # that should serve ``version`` and have not reported on it.
    not_reported: tuple[str, ...]
    # The canary's failure markers (identity -> outcome and reason): what halts it,
    # whatever the host's report says now.
    markers: dict[str, str] = field(default_factory=dict)
    signed: bool = False

    @property
    def halt(self) -> tuple[str, str] | None:
        """(rule, why) of the halt rule that halts the canary; None when none does."""
        return first_halt(self.pointer, Evidence(self.markers, self.live()))

    @property
    def halted(self) -> bool:
        return self.halt is not None

    def live(self) -> dict[str, Any]:
        """The live checks of the canary's hosts (reports under its nonce)."""
        canary = self.pointer.canary
        reports = self.tally.reports if self.tally else ()
        return {
            r.identity: r.live
            for r in reports
            if r.live is not None and (canary is None or r.canary == canary.nonce)
        }

    def failed(self) -> dict[str, str]:
        reports = self.tally.reports if self.tally else ()
        found = {
            r.identity: f"{r.outcome}: {r.reason}"
            for r in sorted(reports, key=lambda r: r.identity)
            if r.outcome in FAILED_OUTCOMES
        }
        for identity, why in self.markers.items():
            found[identity] = why or found.get(identity) or "failure marker (unreadable)"
        return dict(sorted(found.items()))

    def as_dict(self) -> dict[str, Any]:
        reports = self.tally.reports if self.tally else ()
        failed = self.failed()
        pointer = self.pointer
        halt = self.halt
        live = self.live()
        rises, ratios = cohort_figures(live)
        return {
            "pointer": pointer.model_dump(),
            "signed": self.signed,
            "version": self.version,
            "confirmed": sorted(
                r.identity for r in reports if r.outcome == "confirmed" and r.identity not in failed
            ),
            "failed": failed,
            "halted": halt is not None,
            "halt": {
                "rule": halt[0] if halt else None,
                "reason": halt[1] if halt else None,
                "halt_after": pointer.halt_after,
                "halt_live": pointer.halt_live.model_dump() if pointer.halt_live else None,
                "on_halt": pointer.on_halt,
                "failed_hosts": sorted(self.markers),
            },
            # Each host's smoke and bake verdicts on the version, and the cohort's
            # medians (what the cohort_median rule compares).
            "live": {host: checks.model_dump() for host, checks in sorted(live.items())},
            "live_aggregate": {
                "hosts_with_bake_figures": max(len(rises), len(ratios)),
                "median_error_increase": statistics.median(rises) if rises else None,
                "median_latency_ratio": statistics.median(ratios) if ratios else None,
            },
            "not_reported": list(self.not_reported),
            "unreadable_reports": self.tally.ignored if self.tally else 0,
        }
