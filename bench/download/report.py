"""Medians of the rounds, the ratios the targets are stated in, and the tables."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from bench.download.datasets import MB
from bench.download.suite import NOOP_AGAIN, Sample

PEERS = ("rclone", "s5cmd", "gcsfs", "KServe storage initializer")
CURL, DURABLE = "limit: curl --parallel", "limit: write + fsync"
PHASE, FIXED = "modelsync, download phase", "modelsync, fixed cost (whole - download)"


@dataclass
class Row:
    """One tool on one dataset and store: medians over its successful rounds."""

    dataset: str
    key: str
    store: str
    tool: str
    seconds: float | None
    mb_moved: float
    cpu: float | None = None
    server_cpu: float | None = None
    rss_mb: float | None = None  # the largest peak of any round
    fetched_mb: float | None = None
    runs: str = ""
    checks: str = ""
    note: str = ""
    x_peer: float | None = None
    x_limit: float | None = None


def _median(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real else None


def rows(samples: list[Sample]) -> list[Row]:
    """One row per (dataset, store, tool), in the order first measured; modelsync's
    rows are followed by its download phase and its fixed cost."""
    groups: dict[tuple[str, str, str], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.dataset.key, sample.store, sample.tool), []).append(sample)
    out: list[Row] = []
    for (key, store, tool), group in groups.items():
        data = group[0].dataset
        good = [s for s in group if s.ok and s.run is not None]
        notes = sorted({s.note for s in group if s.note})
        row = Row(
            data.label,
            key,
            store,
            tool,
            _median([s.run.seconds for s in good if s.run]),
            0.0 if tool == NOOP_AGAIN else data.must_fetch / MB,
            _median([s.run.cpu for s in good if s.run]),
            _median([s.run.server_cpu for s in good if s.run]),
            max((s.run.rss_mb or 0.0 for s in good if s.run), default=None) or None,
            _fetched(good),
            f"{len(good)}/{len(group)}",
            group[0].checks,
            "; ".join(notes),
        )
        out.append(row)
        phases = [s.phase for s in good if s.phase is not None]
        if tool.startswith("modelsync") and phases:
            # "modelsync" has the rows the targets name; a variant ("modelsync x8",
            # "modelsync, after kill -9") has its own.
            phase_name = PHASE if tool == "modelsync" else f"{tool}: download phase"
            fixed_name = FIXED if tool == "modelsync" else f"{tool}: fixed cost"
            runs = f"{len(phases)}/{len(group)}"
            out.append(
                Row(
                    data.label,
                    key,
                    store,
                    phase_name,
                    _median(list(phases)),
                    row.mb_moved,
                    runs=runs,
                )
            )
            fixed = [s.run.seconds - s.phase for s in good if s.run and s.phase is not None]
            out.append(
                Row(data.label, key, store, fixed_name, _median(list(fixed)), 0.0, runs=runs)
            )
    _ratios(out)
    return out


def _fetched(good: list[Sample]) -> float | None:
    value = _median([float(s.fetched) for s in good if s.fetched is not None])
    return value / MB if value is not None else None


def limit_seconds(table: list[Row], key: str, store: str) -> float | None:
    """The limit a target is judged against: curl alone for many small objects (as
    issue 23 names it), else the slower of curl and the durable write. For small
    objects the durable write is not always the faster: creating a file cost 0.5-0.8
    ms of kernel CPU on one machine here, so 1,000 of them took longer to write than
    to download (targets.py says so beside the ratio; docs/performance.md)."""
    found = {r.tool: r.seconds for r in table if r.key == key and r.store == store}
    curl, durable = found.get(CURL), found.get(DURABLE)
    if key in ("small", "lat") or durable is None:
        return curl
    return max(curl, durable) if curl is not None else None


def _ratios(table: list[Row]) -> None:
    for row in table:
        same = [r for r in table if r.key == row.key and r.store == row.store]
        peers = [r.seconds for r in same if r.tool in PEERS and r.seconds]
        limit = limit_seconds(table, row.key, row.store)
        if row.seconds and "fixed cost" not in row.tool and row.tool != NOOP_AGAIN:
            row.x_peer = min(peers) / row.seconds if peers else None
            row.x_limit = limit / row.seconds if limit else None


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(table: list[Row]) -> str:
    lines = [
        "| dataset | store | tool | seconds | MB/s | CPU s | server CPU s | peak RSS MB "
        "| fetched MB | x fastest peer | x limit | runs | checks, notes |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in table:
        rate = r.mb_moved / r.seconds if r.seconds and r.mb_moved else None
        notes = "; ".join(x for x in (r.checks, r.note) if x)
        cells = [
            r.dataset,
            r.store,
            r.tool,
            _cell(r.seconds, ".3f"),
            _cell(rate, ".0f"),
            _cell(r.cpu, ".2f"),
            _cell(r.server_cpu, ".2f"),
            _cell(r.rss_mb, ".0f"),
            _cell(r.fetched_mb, ",.1f"),
            _cell(r.x_peer, ".2f"),
            _cell(r.x_limit, ".2f"),
            r.runs,
            notes,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def as_json(table: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in table]
