"""A real fleet on one machine: 20 `modelsync run` processes follow one release channel.

Each host has its own identity, store and server check (an exec confirm that fails
for chosen host/version pairs, as a server that cannot load a revision does). The
channel is changed with `modelsync release`, as an operator would, against file://
and against the GCS emulator. What is asserted is read off the hosts' disks (the
``current`` link each one serves) and the bucket (the reports).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelsync.channel import Canary, in_cohort
from modelsync.publish import publish
from modelsync.sources import open_source
from modelsync.sources.control import Control
from tests.backends import Backend, GcsBackend, LocalBackend
from tests.daemonproc import DaemonProcess
from tests.helpers import write_tree

HOSTS = [f"host-{i:02d}" for i in range(20)]
INTERVAL = 2.0
# One interval with its jitter, plus a pass's own time on a loaded two-core machine.
ONE_INTERVAL = INTERVAL * 1.1 + 4.0


@pytest.fixture(params=["file", "gs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "file":
        yield LocalBackend(tmp_path / "bucket" / "ranker")
    else:
        yield GcsBackend(
            request.getfixturevalue("gcs_emulator"), request.getfixturevalue("gcs_bucket")
        )


class Fleet:
    def __init__(self, root: Path, backend: Backend, procs: list[DaemonProcess]) -> None:
        self.root, self.backend, self.procs = root, backend, procs
        (root / "bad").mkdir(parents=True)

    def config(self, host: str) -> Path:
        options = "".join(f'{k} = "{v}"\n' for k, v in self.backend.options().items())
        check = (
            f'test ! -e {self.root}/bad/{host}-"$MODELSYNC_VERSION" || '
            '{ echo "cannot load version $MODELSYNC_VERSION: bad tensor shape" >&2; exit 3; }'
        )
        path = self.root / host / "modelsync.toml"
        path.parent.mkdir(parents=True)
        path.write_text(
            f'store = "{self.root / host / "store"}"\n'
            f'interval = "{INTERVAL}s"\n'
            f'identity = "{host}"\n'
            "[[models]]\n"
            'name = "ranker"\n'
            f'source = "{self.backend.url}"\n'
            'channel = "prod"\n'
            "report = true\n"
            "[models.confirm]\n"
            'method = "exec"\n'
            f"command = ['sh', '-c', '''{check}''']\n"
            'timeout = "10s"\n'
            'period = "0.2s"\n'
            "[models.source_options]\n" + options
        )
        return path

    def start(self) -> None:
        for host in HOSTS:
            proc = DaemonProcess(["--config", str(self.config(host))], self.root / f"{host}.log")
            self.procs.append(proc)

    def serving(self) -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for host in HOSTS:
            link = self.root / host / "store" / "ranker" / "current"
            try:
                found[host] = int(link.readlink().name)
            except (OSError, ValueError):
                found[host] = None
        return found

    def wait(
        self, want: Callable[[dict[str, int | None]], bool], timeout: float, what: str
    ) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if want(self.serving()):
                return time.monotonic() - started
            time.sleep(0.1)
        serving = self.serving()
        raise AssertionError(
            f"{what}: not within {timeout}s; serving {serving}" + self.tails(serving)
        )

    def tails(self, serving: dict[str, int | None]) -> str:
        """The log ends of hosts that serve nothing or have exited: CI keeps no files."""
        out = []
        for host, proc in zip(HOSTS, self.procs, strict=True):
            if serving[host] is None or proc.proc.poll() is not None:
                tail = proc.log_path.read_text()[-1500:]
                out.append(f"\n--- {host} (exit {proc.proc.poll()}):\n{tail}")
        return "".join(out)

    def hold(self, want: Callable[[dict[str, int | None]], bool], seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert want(self.serving()), self.serving()
            time.sleep(0.1)

    def release(self, command: str, *args: str) -> str:
        """`modelsync release COMMAND ranker ARGS` as an operator runs it."""
        options = [f"--source-option={k}={v}" for k, v in self.backend.options().items()]
        argv = [sys.executable, "-m", "modelsync", "release", command, "ranker", *args]
        done = subprocess.run(
            [*argv, "--source", self.backend.url, "--channel", "prod", *options],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def report(self, host: str, version: int) -> bytes | None:
        """The report ``host`` wrote on ``version``, read from the bucket."""
        source = open_source(self.backend.url, self.backend.options())
        try:
            got = source.get_control(f"_reports/{version}/{host}.json", 4096)
        finally:
            source.close()
        return got.data if isinstance(got, Control) else None

    def publish(self, version: int) -> None:
        src = write_tree(self.root / f"src{version}", {"model.bin": b"v%d" % version * 1000})
        publish(src, self.backend.url, version=version, source_options=self.backend.options())


def _cohort(version: int, percent: float) -> set[str]:
    return {h for h in HOSTS if in_cohort("ranker", Canary(version=version, percent=percent), h)}


def test_canary_cohort_halt_and_promote(
    tmp_path: Path, backend: Backend, procs: list[DaemonProcess]
) -> None:
    fleet = Fleet(tmp_path / "fleet", backend, procs)
    for version in (1, 2):
        fleet.publish(version)
    fleet.release("promote", "--version", "1")
    fleet.start()
    fleet.wait(lambda s: set(s.values()) == {1}, 90, "every host on stable 1")

    # Canary at 20 %: the cohort adopts it, and only the cohort, and stays on it as
    # the share grows.
    twenty = _cohort(2, 20)
    assert 0 < len(twenty) < len(HOSTS)
    fleet.release("start", "2", "--percent", "20")

    def split(cohort: set[str]) -> Callable[[dict[str, int | None]], bool]:
        return lambda s: all(v == (2 if h in cohort else 1) for h, v in s.items())

    fleet.wait(split(twenty), 4 * ONE_INTERVAL, "the 20 % cohort on canary 2")
    fleet.hold(split(twenty), 2 * INTERVAL)
    fifty = _cohort(2, 50)
    assert twenty <= fifty
    fleet.release("set", "--percent", "50")
    fleet.wait(split(fifty), 4 * ONE_INTERVAL, "the 50 % cohort on canary 2")
    fleet.release("promote")
    fleet.wait(lambda s: set(s.values()) == {2}, 4 * ONE_INTERVAL, "every host on 2")

    # Canary 3 breaks one cohort host's server: the fleet halts without any controller.
    fleet.publish(3)
    cohort = _cohort(3, 40)
    bad = sorted(cohort)[0]
    (fleet.root / "bad" / f"{bad}-3").touch()
    fleet.release("start", "3", "--percent", "40")
    # Cohort hosts that pass before the bad host's report is in adopt 3 (and go
    # back); the ones after it never adopt it.
    reported = time.monotonic()
    while (report := fleet.report(bad, 3)) is None:
        assert time.monotonic() - reported < 4 * ONE_INTERVAL, "no report from the bad host"
        time.sleep(0.1)
    assert b'"rolled_back"' in report and b"bad tensor shape" in report
    halt = fleet.wait(lambda s: set(s.values()) == {2}, 4 * ONE_INTERVAL, "every host back on 2")
    adopters = [h for h in sorted(cohort) if (r := fleet.report(h, 3)) and b"confirmed" in r]
    assert halt < ONE_INTERVAL + 5, halt  # within one interval of the failure (+ the swap)
    fleet.release("set", "--percent", "100")
    fleet.hold(lambda s: set(s.values()) == {2}, 3 * INTERVAL)  # halted: nobody adopts 3
    status = fleet.release("status")
    assert f"{bad}: rolled_back: " in status and "bad tensor shape" in status, status

    # A fixed revision goes out and is promoted: every host converges on it.
    fleet.release("abort")
    fleet.publish(4)
    fleet.release("start", "4", "--percent", "20")
    fleet.release("promote")
    fleet.wait(lambda s: set(s.values()) == {4}, 4 * ONE_INTERVAL, "every host on 4")
    for proc in procs:
        assert proc.proc.poll() is None, proc.log_path.read_text()[-2000:]
    print(f"fleet halt after the first failure: {halt:.1f} s; {len(adopters)} adopters reverted")
