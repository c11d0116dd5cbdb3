"""Run gcp-storage-emulator for the tests, as a child process: python -m tests.gcs_emulator PORT

Documented patch: the stock emulator serves one request at a time on
http.server.HTTPServer with a listen backlog of 5, so parallel clients see refused
connections real GCS never gives (../shared/GCS-EMULATOR.md). This launcher
swaps in a ThreadingHTTPServer with a deeper backlog before the emulator builds
its server; the emulator's request handling is unchanged.
"""

from __future__ import annotations

import http.server
import signal
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class _ThreadingServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


def start(timeout: float = 30) -> tuple[subprocess.Popen[bytes], str]:
    """Start this launcher as a child on a free loopback port; (process, base URL) once up."""
    from tests.helpers import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.gcs_emulator", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/", timeout=1):
                return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                proc.wait()
                raise RuntimeError("gcp-storage-emulator did not start") from None
            time.sleep(0.1)


def main() -> None:
    port = int(sys.argv[1])
    http.server.HTTPServer = _ThreadingServer  # type: ignore[misc]
    from gcp_storage_emulator.server import create_server

    def stop(_signum: int, _frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    create_server("127.0.0.1", port, in_memory=True).run()


if __name__ == "__main__":
    main()
