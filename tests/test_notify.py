"""Each notify method against real processes and a real HTTP server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.config import NotifyConfig
from modelsync.errors import ReloadError
from modelsync.notify import build_notifier
from modelsync.notify.signal import find_processes
from modelsync.reload import ReloadTarget, ServerNotRunning
from tests.daemonproc import free_port
from tests.httpstub import http_stub

TARGET = ReloadTarget("ranker", 7, Path("/models/ranker/7"))
# A pass without a deadline (tests of the deadline give their own).
PASS = CancelToken()
CATCHER = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGHUP, lambda *a: (print('HUP', flush=True), sys.exit(0)))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def _catcher(tag: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", CATCHER, tag], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_signal_by_pidfile_reaches_the_process(tmp_path: Path) -> None:
    """SIGHUP goes to the PID in the pidfile; the process really receives it."""
    proc = _catcher("pidfile")
    pidfile = tmp_path / "server.pid"
    pidfile.write_text(f"{proc.pid}\n")
    build_notifier(NotifyConfig.of(method="signal", pidfile=pidfile)).notify(TARGET, PASS)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "HUP"
    assert proc.wait(5) == 0
    proc.stdout.close()


def test_signal_by_process_pattern(tmp_path: Path) -> None:
    """A command-line pattern finds the process (shared PID namespace in a pod)."""
    tag = f"modelsync-test-server-{time.monotonic_ns()}"
    proc = _catcher(tag)
    assert find_processes(tag) == [proc.pid]
    build_notifier(NotifyConfig.of(method="signal", process=tag)).notify(TARGET, PASS)
    assert proc.wait(5) == 0
    assert proc.stdout is not None
    proc.stdout.close()


def test_signal_without_a_server_says_not_running(tmp_path: Path) -> None:
    """No pidfile, a dead PID, or no matching process: ServerNotRunning."""
    with pytest.raises(ServerNotRunning, match="does not exist"):
        build_notifier(NotifyConfig.of(method="signal", pidfile=tmp_path / "none")).notify(
            TARGET, CancelToken()
        )
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "dead.pid").write_text(str(dead.pid))
    with pytest.raises(ServerNotRunning):
        build_notifier(NotifyConfig.of(method="signal", pidfile=tmp_path / "dead.pid")).notify(
            TARGET, CancelToken()
        )
    with pytest.raises(ServerNotRunning, match="no process matches"):
        build_notifier(NotifyConfig.of(method="signal", process="no-such-thing-xyz")).notify(
            TARGET, CancelToken()
        )
    (tmp_path / "junk.pid").write_text("not a pid")
    with pytest.raises(ReloadError, match="not a PID"):
        build_notifier(NotifyConfig.of(method="signal", pidfile=tmp_path / "junk.pid")).notify(
            TARGET, CancelToken()
        )


def test_http_posts_the_rendered_body() -> None:
    """The URL and body templates get model, version and path; 2xx succeeds."""
    with http_stub(lambda m, p, b: (200, b"{}")) as (url, seen):
        config = NotifyConfig.of(
            method="http",
            url=url + "/v2/repository/models/{model}/load",
            body='{{"version": {version}, "path": "{path}"}}',
        )
        build_notifier(config).notify(TARGET, PASS)
    assert seen[0][:2] == ("POST", "/v2/repository/models/ranker/load")
    assert json.loads(seen[0][2]) == {"version": 7, "path": "/models/ranker/7"}


def test_http_errors_refused_and_timeouts() -> None:
    """A 5xx carries the server's words; a closed port is ServerNotRunning; a hang times out."""
    with (
        http_stub(lambda m, p, b: (500, b'{"error": "failed to load ranker"}')) as (url, _),
        pytest.raises(ReloadError, match=r"HTTP 500.*failed to load ranker"),
    ):
        build_notifier(NotifyConfig.of(method="http", url=url)).notify(TARGET, PASS)
    with pytest.raises(ServerNotRunning, match="connection refused"):
        build_notifier(
            NotifyConfig.of(method="http", url=f"http://127.0.0.1:{free_port()}/")
        ).notify(TARGET, PASS)

    def slow(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        time.sleep(3)
        return 200, b""

    with http_stub(slow) as (url, _):
        started = time.monotonic()
        with pytest.raises(ReloadError):
            build_notifier(NotifyConfig.of(method="http", url=url, timeout=0.5)).notify(
                TARGET, CancelToken()
            )
        assert time.monotonic() - started < 2.5


def test_exec_gets_the_environment_and_fails_clearly(tmp_path: Path) -> None:
    """The command sees MODELSYNC_* variables; non-zero exit, missing command, timeout fail."""
    out = tmp_path / "env.txt"
    script = (
        f"import os; open({str(out)!r}, 'w').write(' '.join(os.environ['MODELSYNC_' + k] "
        "for k in ('MODEL', 'VERSION', 'PATH')))"
    )
    build_notifier(NotifyConfig.of(method="exec", command=(sys.executable, "-c", script))).notify(
        TARGET, CancelToken()
    )
    assert out.read_text() == "ranker 7 /models/ranker/7"
    failing = (sys.executable, "-c", "import sys; sys.exit('reload refused: bad graph')")
    with pytest.raises(ReloadError, match="exited 1: reload refused: bad graph"):
        build_notifier(NotifyConfig.of(method="exec", command=failing)).notify(
            TARGET, CancelToken()
        )
    with pytest.raises(ReloadError, match="command not found"):
        build_notifier(NotifyConfig.of(method="exec", command=("/no/such/cmd",))).notify(
            TARGET, CancelToken()
        )
    with pytest.raises(ReloadError, match="did not finish"):
        build_notifier(
            NotifyConfig.of(
                method="exec",
                timeout=0.5,
                command=(sys.executable, "-c", "import time; time.sleep(5)"),
            )
        ).notify(TARGET, PASS)


def test_config_requires_what_each_method_needs() -> None:
    """signal needs pidfile or process and a real signal name; http a URL; exec a command."""
    for bad in (
        {"method": "signal"},
        {"method": "signal", "pidfile": "/p", "signal": "SIGNOPE"},
        {"method": "http"},
        {"method": "exec"},
    ):
        with pytest.raises(ValueError, match=r"needs pidfile|unknown signal|url|command"):
            NotifyConfig.of(**bad)
    assert signal.Signals["SIGUSR1"]


def test_credentials_in_a_url_become_a_header_and_never_show() -> None:
    """user:password@ in notify.url is sent as Basic auth, and errors show the URL
    without it (issue 11 finding 13)."""
    import base64

    headers: list[str] = []

    def answer(m: str, p: str, b: bytes) -> tuple[int, bytes]:
        return 500, b'{"error": "nope"}'

    with http_stub(answer, record_headers=headers) as (url, _):
        secret_url = url.replace("http://", "http://ops:s3cr%40t@") + "/reload"
        with pytest.raises(ReloadError) as info:
            build_notifier(NotifyConfig.of(method="http", url=secret_url)).notify(
                TARGET, CancelToken()
            )
    assert "s3cr" not in str(info.value) and "ops" not in str(info.value)
    assert "***@127.0.0.1" in str(info.value)
    assert headers == ["Basic " + base64.b64encode(b"ops:s3cr@t").decode()]


def test_commands_never_see_the_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin token in modelsync's environment is not handed to exec children."""
    monkeypatch.setenv("MODELSYNC_ADMIN_TOKEN", "t0k")
    out = tmp_path / "env"
    script = f"import os, pathlib; pathlib.Path({str(out)!r}).write_text(repr(dict(os.environ)))"
    build_notifier(NotifyConfig.of(method="exec", command=(sys.executable, "-c", script))).notify(
        TARGET, CancelToken()
    )
    seen = out.read_text()
    assert "MODELSYNC_VERSION" in seen and "t0k" not in seen


def test_a_pattern_matching_two_processes_signals_neither(tmp_path: Path) -> None:
    """Two processes match (a server and a look-alike): nothing is signalled, the error
    names both (issue 11 finding 15)."""
    tag = f"modelsync-test-server-{time.monotonic_ns()}"
    first, second = _catcher(tag), _catcher(tag + "-backup")
    try:
        with pytest.raises(ReloadError, match="matches 2 processes"):
            build_notifier(NotifyConfig.of(method="signal", process=tag)).notify(
                TARGET, CancelToken()
            )
        time.sleep(0.3)
        assert first.poll() is None and second.poll() is None  # neither got SIGHUP
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
