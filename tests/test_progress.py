from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from tests.helpers import model_files, put_revision, sidecar_flags


def test_sync_on_a_terminal_draws_a_progress_bar(tmp_path: Path, bucket: Path) -> None:
    """Run sync with a real pseudo-terminal as stderr: a percentage bar is drawn."""
    put_revision(bucket, 1, model_files(1, size=2_000_000))
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelsync",
            "sync",
            *sidecar_flags(tmp_path / "store", bucket),
        ],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    output = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert proc.wait(timeout=30) == 0
    text = output.decode(errors="replace")
    assert "ranker v1" in text and "100%" in text
    assert '{"' not in text  # console lines, not JSON, on a terminal
