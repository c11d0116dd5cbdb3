"""The measurements: each dataset on each store, rounds with the tool order rotated;
the kill -9 resume; the latency sweep; the start-up of the command."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench.download import tools
from bench.download.datasets import Dataset, write_tree
from bench.download.latency import DelayProxy
from bench.download.runs import Run, run
from bench.download.servers import Server

# The row of a no-op `sync` run right after modelsync fetched a dataset.
NOOP_AGAIN = "modelsync, no-op sync right after"


@dataclass(frozen=True)
class Sample:
    """One run of one tool on one dataset and store, in one round."""

    dataset: Dataset
    store: str
    tool: str
    run: Run | None  # None: the tool is not installed here
    checks: str = ""
    phase: float | None = None  # modelsync's download phase, from its own log
    fetched: int | None = None  # bytes modelsync fetched, from its own log
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.run is not None and self.run.code == 0 and not self.note.startswith("FAIL")


def publish(server: Server, data: Dataset, work: Path) -> None:
    """``data`` as a revision on ``server``, by `modelsync publish` (manifest last)."""
    src = write_tree(work / "src" / data.model, data)
    argv = [sys.executable, "-m", "modelsync", "publish", str(src), server.url(data.model)]
    argv += ["--version", str(data.version)]
    for key, value in server.options.items():
        argv += ["--source-option", f"{key}={value}"]
    done = subprocess.run(
        argv, env={**tools.base_env(), **server.env}, capture_output=True, text=True, check=False
    )
    shutil.rmtree(work / "src")
    if done.returncode != 0:
        raise RuntimeError(f"publish {data.label} to {server.label}: {done.stderr[-500:]}")


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path``; a file renamed or removed while it is
    walked (a tool's temporary file) counts as nothing rather than failing the run."""
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file() and not item.is_symlink():
                total += item.stat().st_size
        except FileNotFoundError:
            continue
    return total


def _events(log: str, name: str) -> list[dict[str, object]]:
    out = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                out.append(event)
    return out


def _modelsync_sample(data: Dataset, server: Server, result: Run, store: Path, log: Path) -> Sample:
    command_checks = tools.MODELSYNC_CHECKS
    done = _events(log.read_text(errors="replace"), "downloaded and verified")
    served = tree_bytes(store / data.model / str(data.version))
    if result.code != 0 or served < data.total:
        note = f"FAILED exit {result.code}: {result.stderr.strip().splitlines()[-1:]}"
        return Sample(data, server.label, "modelsync", result, command_checks, note=note)
    phase = float(str(done[0]["seconds"])) if done else None
    fetched = int(str(done[0]["fetched_bytes"])) if done else None
    return Sample(data, server.label, "modelsync", result, command_checks, phase, fetched)


def measure_dataset(
    server: Server,
    data: Dataset,
    rounds: int,
    work: Path,
    peers_python: Path | None,
    base: Path,
) -> list[Sample]:
    """Every tool on ``data``, ``rounds`` times, the order rotated each round.

    An update (``data.changed``) starts from a copy of the previous revision's
    result, taken in ``base`` by the dataset before it; a fresh dataset keeps its
    last modelsync and rclone results there for the update after it."""
    names = ["modelsync", "rclone"]
    if server.name == "s3":
        names.append("s5cmd")
    if server.name == "gs" and peers_python is not None and not data.changed:
        names += ["gcsfs", "KServe storage initializer"]
    names += ["limit: curl --parallel", "limit: write + fsync"]
    samples: list[Sample] = []
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            out = work / "out" / name.replace(" ", "_").replace(":", "")
            shutil.rmtree(out, ignore_errors=True)
            if data.changed and name in ("modelsync", "rclone"):
                subprocess.run(["cp", "-a", str(base / name), str(out)], check=True)
            out.mkdir(parents=True, exist_ok=True)
            sample = _one(server, data, name, out, peers_python)
            samples.append(sample)
            if name == "modelsync" and not data.changed and sample.ok:
                samples.append(_noop_again(server, data, out))
            if not data.changed and name in ("modelsync", "rclone") and round_no == rounds - 1:
                shutil.rmtree(base / name, ignore_errors=True)
                base.mkdir(parents=True, exist_ok=True)
                out.rename(base / name)
            shutil.rmtree(out, ignore_errors=True)
    return samples


def _one(server: Server, data: Dataset, name: str, out: Path, peers_python: Path | None) -> Sample:
    log = out.parent / f"{out.name}.log"
    if name == "modelsync":
        store = out / "models"
        command = tools.modelsync(server, data, store, out.parent / "modelsync.toml")
        result = run(command.argv, command.env, server_cpu=server.cpu, stderr_to=log)
        return _modelsync_sample(data, server, result, store, log)
    dest = out / "tree"
    dest.mkdir(exist_ok=True)
    maybe: tools.Command | None
    if name == "rclone":
        maybe = tools.rclone(server, data, dest)
    elif name == "s5cmd":
        maybe = tools.s5cmd(server, data, dest)
    elif name == "limit: curl --parallel":
        maybe = tools.curl_limit(server, data, out.parent / "curl.conf")
    elif name == "limit: write + fsync":
        maybe = tools.durable_limit(data, dest)
    else:
        assert peers_python is not None
        maybe = tools.python_peer(name, peers_python, server, data, dest)
    if maybe is None:
        return Sample(data, server.label, name, None, note="not installed")
    result = run(maybe.argv, maybe.env, server_cpu=server.cpu, stderr_to=log)
    if name == "limit: write + fsync" and result.code == 0:
        # Its own time, without the interpreter's start.
        seconds = float(result.stderr.strip().rsplit("seconds=", 1)[1])
        result = replace(result, seconds=seconds, server_cpu=None)
    expected = 0 if name == "limit: curl --parallel" else data.total
    if name == "limit: write + fsync":
        expected = data.must_fetch
    got = tree_bytes(dest)
    note = ""
    if result.code != 0 or got < expected:
        note = f"FAILED exit {result.code}, {got:,} of {expected:,} bytes"
    return Sample(data, server.label, name, result, maybe.checks, note=note)


def _noop_again(server: Server, data: Dataset, out: Path) -> Sample:
    """The same `modelsync sync` once more, right after it fetched ``data``: a no-op on
    this store with this many files (the start-up rows' no-op is one small file://
    model). It must fetch nothing."""
    log = out.parent / f"{out.name}-noop.log"
    command = tools.modelsync(server, data, out / "models", out.parent / "modelsync.toml")
    result = run(command.argv, command.env, server_cpu=server.cpu, stderr_to=log)
    note = ""
    if result.code != 0:
        note = f"FAILED exit {result.code}"
    elif _events(log.read_text(errors="replace"), "downloading"):
        note = "FAILED: fetched again"
    return Sample(data, server.label, NOOP_AGAIN, result, note=note)


def _io_written(pid: int) -> int:
    """Bytes a live process has written (wchar of /proc/PID/io): files, whatever the
    engine's layout of partial files, and no walk of a directory it renames in."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def resume(server: Server, data: Dataset, rounds: int, work: Path, share: float) -> list[Sample]:
    """`modelsync sync` killed with SIGKILL once it has written ``share`` of the revision,
    then run again: the second run's cost and how much of the revision it fetched."""
    samples = []
    for _ in range(rounds):
        out = work / "out" / "resume"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        store = out / "models"
        command = tools.modelsync(server, data, store, out / "modelsync.toml")
        written = 0
        with subprocess.Popen(command.argv, env=command.env, stderr=subprocess.DEVNULL) as proc:
            while proc.poll() is None and written < share * data.total:
                written = _io_written(proc.pid)
                time.sleep(0.002)
            proc.send_signal(signal.SIGKILL)
        log = out / "second.log"
        result = run(command.argv, command.env, server_cpu=server.cpu, stderr_to=log)
        sample = _modelsync_sample(data, server, result, store, log)
        note = f"killed with {written / data.total:.1%} written"
        samples.append(replace(sample, tool="modelsync, after kill -9", note=sample.note or note))
        shutil.rmtree(out, ignore_errors=True)
    return samples


def latency_sweep(
    server: Server, data: Dataset, rounds: int, work: Path, delay: float, levels: list[int]
) -> list[Sample]:
    """``data`` through a proxy that delays every request by ``delay``: modelsync,
    rclone and curl at each concurrency in ``levels``."""
    proxy = DelayProxy(int(server.endpoint.rsplit(":", 1)[1]), delay)
    slow = replace(
        server,
        endpoint=proxy.endpoint,
        env={"STORAGE_EMULATOR_HOST": proxy.endpoint},
        options={"endpoint": proxy.endpoint},
    )
    samples = []
    try:
        for round_no in range(rounds):
            jobs = [(tool, n) for n in levels for tool in ("modelsync", "rclone", "curl")]
            shift = round_no % len(jobs)
            for tool, n in jobs[shift:] + jobs[:shift]:
                samples.append(_latency_one(slow, data, tool, n, work / "out" / "latency"))
    finally:
        proxy.close()
    return samples


def _latency_one(server: Server, data: Dataset, tool: str, n: int, out: Path) -> Sample:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log = out / "stderr.log"
    name = f"{tool} x{n}"
    try:
        if tool == "modelsync":
            store = out / "models"
            command = tools.modelsync(server, data, store, out / "m.toml", concurrency=n)
            result = run(command.argv, command.env, server_cpu=server.cpu, stderr_to=log)
            return replace(_modelsync_sample(data, server, result, store, log), tool=name)
        if tool == "rclone":
            maybe = tools.rclone(server, data, out / "tree", transfers=n)
        else:
            maybe = tools.curl_limit(server, data, out / "curl.conf", parallel=n)
        if maybe is None:
            return Sample(data, server.label, name, None, note="not installed")
        result = run(maybe.argv, maybe.env, server_cpu=server.cpu, stderr_to=log)
        note = "" if result.code == 0 else f"FAILED exit {result.code}"
        return Sample(data, server.label, name, result, maybe.checks, note=note)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def startup(work: Path, data: Dataset, runs: int) -> list[Sample]:
    """`modelsync --version` and a no-op `sync` of a file:// model, ``runs`` times each."""
    bucket, store = work / "noop-bucket", work / "noop" / "models"
    src = write_tree(work / "noop-src", data)
    env = tools.base_env()
    base = [sys.executable, "-m", "modelsync"]
    url = f"file://{bucket}/{data.model}"
    subprocess.run(
        [*base, "publish", str(src), url, "--version", "1"],
        env=env,
        check=True,
        capture_output=True,
    )
    sync = [*base, "sync", "--store", str(store), "--model", data.model, "--source", url]
    subprocess.run(sync, env=env, check=True, capture_output=True)
    samples = []
    for _ in range(runs):
        for tool, argv in (("--version", [*base, "--version"]), ("no-op sync", sync)):
            result = run(argv, env, stderr_to=work / "startup.log")
            note = "" if result.code == 0 else f"FAILED exit {result.code}"
            samples.append(Sample(data, "local (file://)", tool, result, note=note))
    return samples
