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
import sys
import types


class _ThreadingServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


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
