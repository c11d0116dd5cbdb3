"""The skip summary plugin (tests/skipsummary.py), in a real pytest child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_last_line_counts_skips_and_their_reasons(tmp_path: Path) -> None:
    """A run with skips ends with 'skipped: N (reason: count; ...)'."""
    (tmp_path / "test_some.py").write_text(
        "import pytest\n\n"
        "def test_runs():\n    pass\n\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_needs_chromium(n):\n    pytest.skip('chromium is not installed')\n\n"
        "def test_needs_promtool():\n    pytest.skip('promtool is not installed')\n"
    )
    out = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "tests.skipsummary", "-c", "/dev/null"),
            *("--rootdir", str(tmp_path), "-p", "no:cacheprovider", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().splitlines()[-1] == (
        "skipped: 3 (chromium is not installed: 2; promtool is not installed: 1)"
    )
