"""A model server's own Prometheus metrics: one scrape, one model's counters, a window's figures.

A preset names its server's series (``ServerPreset.metrics``, read off the real
servers: docs/servers.md); a custom server gives them in ``[models.bake.series]``.
Only counters are read (and a histogram's cumulative buckets), so a window's figures
are the differences of two scrapes (``Totals``): no Prometheus server is needed, and
nothing here keeps state. A counter that went down was reset (the server restarted,
or unloaded and reloaded the version): its later value is the whole window's.
A series that is absent is no traffic, never a guess: a figure that the named series
cannot give (an error ratio without a failure counter, a p99 without a histogram)
stays None.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from modelsync.bakeconfig import MetricSeries
from modelsync.cancel import CancelToken
from modelsync.verdicts import WindowFigures

__all__ = ["MetricSeries", "MetricsUnavailable", "Totals", "figures", "parse_totals", "scrape"]

# What one scrape may bring back: a server with thousands of models answers a few
# MiB; more is cut (and the series past the cut are missing, not made up).
MAX_SCRAPE_BYTES = 8 * 1024 * 1024
# Series of one model kept from one scrape (a hostile or runaway label set is cut).
MAX_SERIES = 2000


class MetricsUnavailable(Exception):
    """The metrics endpoint gave no usable answer (the message says why and where)."""


@dataclass(frozen=True)
class Totals:
    """One model's cumulative counters at one scrape: series key -> value."""

    at: float
    values: dict[str, float] = field(default_factory=dict)

    def to_doc(self) -> dict[str, object]:
        return {"at": self.at, "values": self.values}

    @classmethod
    def from_doc(cls, doc: object) -> Totals | None:
        """The totals in a journal's JSON, or None when it is not such a record."""
        if not isinstance(doc, dict):
            return None
        at, values = doc.get("at"), doc.get("values")
        if not isinstance(at, int | float) or not isinstance(values, dict):
            return None
        kept = {
            str(k): float(v)
            for k, v in list(values.items())[:MAX_SERIES]
            if isinstance(v, int | float) and math.isfinite(v) and v >= 0
        }
        return cls(float(at), kept)


def _key(name: str, labels: dict[str, str]) -> str:
    # JSON, so that any label value (commas, quotes, braces) comes back as it was.
    return json.dumps([name, sorted(labels.items())])


def _split(key: str) -> tuple[str, dict[str, str]]:
    try:
        name, pairs = json.loads(key)
        return str(name), {str(k): str(v) for k, v in pairs}
    except (ValueError, TypeError):
        return "", {}  # a journal edited by hand: this series counts for nothing


def parse_totals(text: str, series: MetricSeries, model: str, at: float) -> Totals:
    """The counters of ``model`` named by ``series`` in Prometheus text; lines that do
    not parse are skipped (one bad line from a server does not hide the rest)."""
    wanted, values = series.names(), dict[str, float]()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parsed = _sample(line)
        if parsed is None:
            continue
        name, labels, value = parsed
        if name not in wanted or labels.get(series.model_label) != model:
            continue
        if not math.isfinite(value) or value < 0:
            continue
        labels.pop(series.model_label)
        key = _key(name, labels)
        values[key] = values.get(key, 0.0) + value
        if len(values) >= MAX_SERIES:
            break
    return Totals(at, values)


def _sample(line: str) -> tuple[str, dict[str, str], float] | None:
    """One sample line of the text format (name, labels, value); None if malformed."""
    name, labels, rest = line, {}, ""
    if "{" in line:
        name, _, tail = line.partition("{")
        body, sep, rest = tail.rpartition("}")
        if not sep:
            return None
        for part in _label_pairs(body):
            k, eq, v = part.partition("=")
            if not eq or len(v) < 2 or v[0] != '"' or v[-1] != '"':
                return None
            labels[k.strip()] = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    else:
        name, _, rest = line.partition(" ")
    fields = rest.split()
    if not fields:
        return None
    try:
        value = float(fields[0])
    except ValueError:
        return None
    return name.strip(), labels, value


def _label_pairs(body: str) -> list[str]:
    """Split ``a="x",b="y,z"`` on the commas outside quotes."""
    pairs: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in body:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            pairs.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        pairs.append("".join(current).strip())
    return pairs


def scrape(
    url: str, series: MetricSeries, model: str, at: float, timeout: float, cancel: CancelToken
) -> Totals:
    """One GET of ``url``: ``model``'s totals; MetricsUnavailable when it gives none,
    Cancelled when the pass's token fired."""
    from modelsync.transport.client import HttpClient, HttpFailure

    try:
        answer = HttpClient.shared().request("GET", url, None, timeout, cancel, MAX_SCRAPE_BYTES)
    except HttpFailure as exc:
        raise MetricsUnavailable(f"{url}: {exc}") from exc
    if answer.status != 200:
        raise MetricsUnavailable(f"{url}: HTTP {answer.status}")
    return parse_totals(answer.body.decode("utf-8", errors="replace"), series, model, at)


def _delta(start: Totals | None, end: Totals) -> dict[str, float]:
    before = start.values if start is not None else {}
    out = {}
    for key, value in end.values.items():
        change = value - before.get(key, 0.0)
        out[key] = value if change < 0 else change  # a reset: all of it is new
    return out


def figures(start: Totals | None, end: Totals, series: MetricSeries) -> WindowFigures:
    """The window from ``start`` to ``end`` (None: since the server loaded the model)."""
    delta = _delta(start, end)

    def total(name: str | None) -> float | None:
        if name is None:
            return None
        return sum(v for k, v in delta.items() if _split(k)[0] == name)

    success, failure = total(series.success), total(series.failure)
    if success is not None:
        requests = success + (failure or 0.0)
    else:
        requests = total(series.requests) or total(series.duration_count) or 0.0
        if series.histogram and not requests:
            requests = total(f"{series.histogram}_count") or 0.0
    error_ratio = None
    if failure is not None and requests > 0:
        error_ratio = min(1.0, failure / requests)
    mean = None
    duration = total(series.duration_sum)
    count = total(series.duration_count) if series.duration_count else requests
    if duration is not None and count:
        mean = duration * series.duration_scale / count
    p50 = p99 = None
    if series.histogram:
        buckets = _buckets(delta, f"{series.histogram}_bucket")
        p50, p99 = _quantile(buckets, 0.5), _quantile(buckets, 0.99)
    return WindowFigures(
        requests=int(requests),
        error_ratio=error_ratio,
        latency_p50_s=p50,
        latency_p99_s=p99,
        latency_mean_s=mean,
        window_s=None if start is None else max(0.0, end.at - start.at),
    )


def _buckets(delta: dict[str, float], name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) over every label set, sorted by bound."""
    summed: dict[float, float] = {}
    for key, value in delta.items():
        sample, labels = _split(key)
        if sample != name or "le" not in labels:
            continue
        try:
            bound = float(labels["le"])
        except ValueError:
            continue
        summed[bound] = summed.get(bound, 0.0) + value
    return sorted(summed.items())


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus's histogram_quantile: linear within the bucket the rank falls in; in
    the +Inf bucket, the highest finite bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower
