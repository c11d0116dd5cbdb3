"""A pytest plugin: the run's last line says how many tests skipped and why.

`-ra` lists every skip among the short summary; on a machine without Chromium,
promtool or an emulator that list scrolls by, and "N passed" reads like the whole
suite ran. This line is the last thing `make test` prints.
"""

from __future__ import annotations

from collections import Counter

import pytest

__all__ = ["pytest_unconfigure"]


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_unconfigure(config: pytest.Config) -> None:
    # After pytest's own "N passed, M skipped" line, which ends the terminal summary.
    terminalreporter = config.pluginmanager.get_plugin("terminalreporter")
    if terminalreporter is None:
        return
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = Counter(_reason(report) for report in skipped)
    why = "; ".join(f"{reason}: {count}" for reason, count in reasons.most_common())
    terminalreporter.write_line(f"skipped: {len(skipped)} ({why})", yellow=True, bold=True)
