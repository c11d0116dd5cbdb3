"""Child processes end at min(their timeout, the pass deadline), the whole group stopped."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelsync.cancel import CancelToken
from modelsync.children import STDERR_TAIL, STOP_GRACE, ChildTimedOut, run_child
from modelsync.errors import Cancelled

# Ignores SIGTERM, starts a grandchild that writes its PID, then sleeps.
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "open(sys.argv[1], 'w').write(str(g.pid))\n"
    "time.sleep(600)\n"
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie of a parent that died is reaped by init shortly.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.parametrize("how", ["deadline", "stop", "timeout"])
def test_a_stubborn_child_and_its_own_children_are_stopped(tmp_path: Path, how: str) -> None:
    """A child ignoring SIGTERM, with a grandchild: SIGKILLed after STOP_GRACE when the
    pass deadline passes, a stop is requested, or its own timeout runs out."""
    pidfile = tmp_path / "grandchild"
    cancel = CancelToken(deadline=time.monotonic() + 2) if how == "deadline" else CancelToken()
    if how == "stop":
        threading.Timer(2, cancel.stop_event.set).start()
    expected = ChildTimedOut if how == "timeout" else Cancelled
    started = time.monotonic()
    with pytest.raises(expected):
        run_child(
            [sys.executable, "-c", STUBBORN, str(pidfile)],
            dict(os.environ),
            2 if how == "timeout" else 600,
            cancel,
        )
    assert time.monotonic() - started < 2 + STOP_GRACE + 1.5
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived the stop"
        time.sleep(0.1)


# Starts a process in a session of its own (setsid, a daemon's double fork) that
# inherits stderr, writes its PID, then sleeps: it holds the pipe past any stop.
ESCAPING = (
    "import subprocess, sys, time\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],\n"
    "                     start_new_session=True)\n"
    "open(sys.argv[1], 'w').write(str(g.pid))\n"
    "time.sleep(600)\n"
)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_a_command_that_exits_at_once_is_not_held_by_what_it_left_running(
    tmp_path: Path,
) -> None:
    """`server & exit 0`: the background process holds stderr, yet the command's exit
    is returned at once with its status and its last words, and the process it started
    is left running."""
    pidfile = tmp_path / "server.pid"
    script = f"sleep 60 & echo $! > {pidfile}; echo 'restarted' >&2; exit 0"
    started = time.monotonic()
    done = run_child(["sh", "-c", script], dict(os.environ), 5, CancelToken())
    took = time.monotonic() - started
    server = int(pidfile.read_text())
    try:
        assert done.returncode == 0 and done.stderr == b"restarted\n"
        assert took < 1.5, f"returned after {took:.1f}s"
        assert not _gone(server), "the process the command started was stopped"
    finally:
        _kill(server)


def test_gigabytes_of_stderr_cost_a_bounded_tail(tmp_path: Path) -> None:
    """A child writing 1.5 GiB to stderr under a 1 GiB address-space limit: run_child
    returns its exit status and the last STDERR_TAIL bytes, ending in its last line
    (before, all of stderr was kept: MemoryError)."""
    script = "head -c 1536M /dev/zero >&2; echo 'last line: done' >&2; exit 3"
    harness = (
        "import os, sys\n"
        "from modelsync.children import run_child\n"
        "done = run_child(['sh', '-c', sys.argv[1]], dict(os.environ), 120, None)\n"
        "print(done.returncode, len(done.stderr), done.stderr[-16:].decode())\n"
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    started = time.monotonic()
    ran = subprocess.run(
        [sys.executable, "-c", harness, script],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    code, size, last = ran.stdout.split(" ", 2)
    assert (int(code), int(size)) == (3, STDERR_TAIL)
    assert last == "last line: done\n\n"
    print(f"1.5 GiB of stderr read in {time.monotonic() - started:.1f}s")


def test_the_deadline_is_met_when_a_helper_escaped_the_group_with_the_pipe(
    tmp_path: Path,
) -> None:
    """A child still running at the pass deadline whose helper left its session (and
    holds stderr): Cancelled within the deadline plus STOP_GRACE, not after waits for
    a pipe the helper keeps open."""
    pidfile = tmp_path / "helper"
    cancel = CancelToken(deadline=time.monotonic() + 1)
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            run_child([sys.executable, "-c", ESCAPING, str(pidfile)], dict(os.environ), 600, cancel)
        took = time.monotonic() - started
        assert took < 1 + STOP_GRACE + 0.5, f"returned after {took:.1f}s"
    finally:
        _kill(int(pidfile.read_text()))


def test_last_words_are_the_end_of_the_last_stderr_line() -> None:
    """A tool's noise, then one long last line: its end is what a refusal quotes; a
    child that wrote nothing (or only blanks) has no last words."""
    code = "import sys; sys.stderr.write('noise\\n' * 3 + 'x' * 500 + 'the reason\\n\\n')"
    done = run_child([sys.executable, "-c", code], dict(os.environ), 30, None)
    assert done.last_words(20) == "x" * 10 + "the reason"
    quiet = run_child(
        [sys.executable, "-c", "print('  ', file=__import__('sys').stderr)"],
        dict(os.environ),
        30,
        None,
    )
    assert quiet.last_words(20) is None
