"""The status page (`GET /` of the admin endpoint): what each model serves, and why.

Server-rendered from the same report as `/status` (modelsync.status): no script, no
external asset, a meta refresh. Everything that comes from a manifest, a server
message, a bucket or a configuration goes through ``html.escape``: a revision's
metadata can hold anything its producer wrote.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from modelsync.bakepage import bake_line, live_rows
from modelsync.status import version_label

__all__ = ["render"]

REFRESH_SECONDS = 10

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2430;background:#fafbfc}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:0}h3{font-size:1em;margin:1em 0 .3em}
section{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:1em;margin:1em 0}
table{border-collapse:collapse;margin:.3em 0}
td,th{padding:.25em .7em;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}
th{color:#57606a;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .5em;border-radius:1em;font-size:.85em;margin-left:.4em}
.ok{background:#dafbe1;color:#116329}.bad{background:#ffebe9;color:#a40e26}
.warn{background:#fff8c5;color:#7d4e00}.muted{color:#57606a}
.below{background:#ffebe9;color:#a40e26;font-weight:600}.active{background:#f0f6ff}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _latency(seconds: float | None) -> str:
    # Seconds matter here (a push serves within a few): tenths below a minute.
    if seconds is not None and 0 <= seconds < 60:
        return f"{seconds:.1f} s"
    return _age(seconds)


def _badges(model: dict[str, Any]) -> str:
    out = []
    if model.get("error"):
        out.append(("bad", "store error"))
    if model.get("stale"):
        out.append(("bad", "stale"))
    if model.get("rollback_failed"):
        out.append(("bad", "rollback failed"))
    if model.get("pinned") is not None:
        out.append(("warn", f"pinned to {model['pinned']}"))
    if model.get("confirmed") is False:
        out.append(("warn", "not confirmed by the server yet"))
    if (model.get("verification") or {}).get("oms_version_bound") is False:
        out.append(("warn", "version not bound by its signature"))
    channel = model.get("channel") or {}
    if channel.get("halted"):
        out.append(("bad", f"canary {channel.get('canary')} halted"))
    if not out and model.get("active_version") is not None:
        out.append(("ok", "serving"))
    return "".join(f'<span class="badge {cls}">{_e(text)}</span>' for cls, text in out)


def _rows(pairs: Iterable[tuple[str, object]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs)


def _summary(model: dict[str, Any]) -> str:
    max_age = model.get("max_age_seconds")
    age = model.get("revision_age_seconds")
    age_text = _age(age) + (f" (max_age {_age(max_age)})" if max_age else "")
    retained = [
        version_label(r["version"]) for r in model.get("revisions", []) if r["role"] == "retained"
    ]
    pairs: list[tuple[str, object]] = [
        ("active version", version_label(model.get("active_version"))),
        ("revision created", model.get("created") or "-"),
        ("revision age", age_text),
        ("activated", model.get("activated_at") or "-"),
        ("publish to served", _latency(model.get("publish_to_served_seconds"))),
        ("previous / retained", ", ".join(retained) or "none"),
        ("last successful pass", model.get("last_success_at") or "-"),
        ("last outcome", model.get("last_outcome") or "-"),
    ]
    if model.get("last_error"):
        pairs.append(("last error", f"{model['last_error']} ({model.get('last_error_at')})"))
    if model.get("server_reason"):
        pairs.append(("the server said", model["server_reason"]))
    waiting = model.get("waiting")
    if waiting:
        pairs.append(
            (
                "waiting",
                f"version {version_label(waiting['version'])} since {waiting['since']}: "
                f"{waiting['reason']}",
            )
        )
    if model.get("download_progress_bytes") is not None:
        pairs.append(("downloading", f"{model['download_progress_bytes'] / 1e6:,.1f} MB in place"))
    channel = model.get("channel")
    if channel:
        canary = (
            f"canary {channel['canary']} at {channel['percent']:g} %"
            if channel.get("canary")
            else "no canary"
        )
        cohort = "in the cohort" if channel.get("in_cohort") else "not in the cohort"
        pairs.append(
            (
                "release channel",
                f"{channel['channel']} asks for {channel.get('target') or 'nothing'}: "
                f"stable {channel.get('stable') or '-'}, {canary}; "
                f"this host {cohort}; {'HALTED' if channel.get('halted') else 'not halted'}",
            )
        )
    if model.get("off_channel"):
        pairs.append(("not on the channel's version", model["off_channel"]))
    if (verification := model.get("verification") or {}).get("warning"):
        pairs.append(("signatures", verification["warning"]))
    if (baking := bake_line(model)) is not None:
        pairs.append(baking)
    return f"<table>{_rows(pairs)}</table>"


def _metrics(model: dict[str, Any]) -> str:
    revisions = model.get("revisions", [])
    gate: dict[str, float] = model.get("gate", {})
    names = sorted({m for r in revisions for m in r["metrics"]} | set(gate))
    if not revisions:
        return '<p class="muted">no revision on this host yet</p>'
    head = "".join(
        f'<th class="num">{_e(version_label(r["version"]))}<br>'
        f'<span class="muted">{_e(r["role"])}</span></th>'
        for r in revisions
    )
    body = []
    for name in names:
        bar = gate.get(name)
        cells = []
        for r in revisions:
            value = r["metrics"].get(name)
            below = bar is not None and value is not None and value < bar
            cls = "num below" if below else ("num active" if r["role"] == "active" else "num")
            cells.append(f'<td class="{cls}">{"-" if value is None else _e(f"{value:g}")}</td>')
        bar_text = "-" if bar is None else f"&ge; {_e(f'{bar:g}')}"
        body.append(f"<tr><th>{_e(name)}</th><td class='num'>{bar_text}</td>{''.join(cells)}</tr>")
    meta = [
        f"<td>{'<br>'.join(f'{_e(k)} = {_e(v)}' for k, v in r['metadata'].items()) or '-'}</td>"
        for r in revisions
    ]
    body.append(f"<tr><th>metadata</th><td></td>{''.join(meta)}</tr>")
    body.append(f"<tr><th>smoke</th><td></td>{''.join(_smoke_cell(r) for r in revisions)}</tr>")
    body.append(live_rows(revisions))
    if not names:
        body.append(f'<tr><td colspan="{len(revisions) + 2}" class="muted">no metrics</td></tr>')
    return f"<table><tr><th>metric</th><th class='num'>gate</th>{head}</tr>{''.join(body)}</table>"


def _gates(model: dict[str, Any]) -> str:
    """The relative gate's last verdict: each rule beside the candidate's, production's
    and the baseline's value (modelsync.gates)."""
    gates = model.get("gates")
    if not gates:
        return ""
    last = gates.get("last")
    if not last:
        rows = "".join(f"<tr><td>{_e(rule)}</td></tr>" for rule in gates["rules"])
        return f"<h3>Gate</h3><table>{rows}</table><p class='muted'>no candidate judged yet</p>"

    def side(name: str) -> str:
        version = last.get(f"{name}_version")
        label = _e(version_label(version)) if version is not None else "none"
        return f'<th class="num">{name}<br><span class="muted">{label}</span></th>'

    def num(value: float | None) -> str:
        return "-" if value is None else _e(f"{value:g}")

    def result(check: dict[str, Any]) -> str:
        return (
            "<td>passed</td>" if check["passed"] else f"<td class='bad'>{_e(check['reason'])}</td>"
        )

    body = "".join(
        f"<tr><td>{_e(c['rule'])}</td><td class='num'>{num(c['candidate'])}</td>"
        f"<td class='num'>{num(c['production'])}</td><td class='num'>{num(c['baseline'])}</td>"
        f"{result(c)}</tr>"
        for c in last["checks"]
    )
    return (
        f"<h3>Gate</h3><table><tr><th>rule</th>{side('candidate')}{side('production')}"
        f"{side('baseline')}<th>result</th></tr>{body}</table>"
    )


def _smoke_cell(revision: dict[str, Any]) -> str:
    """The smoke verdict of one revision, beside its offline metrics."""
    smoke = (revision.get("live") or {}).get("smoke")
    if not smoke:
        return "<td class='num muted'>-</td>"
    verdict = smoke["verdict"]
    text = f"{verdict} ({smoke['requests']} requests)" if verdict == "passed" else verdict
    if smoke.get("reason"):
        text += f": {smoke['reason']}"
    return f"<td class='num{' below' if verdict == 'failed' else ''}'>{_e(text)}</td>"


def _refused(model: dict[str, Any]) -> str:
    refused = model.get("refused") or {}
    if not refused:
        return '<p class="muted">none</p>'
    rows = _rows((f"version {version_label(int(v))}", why) for v, why in refused.items())
    return f"<table>{rows}</table>"


def _history(model: dict[str, Any]) -> str:
    history = model.get("history") or []
    if not history:
        return '<p class="muted">nothing yet</p>'
    rows = "".join(
        f"<tr><td>{_e(h['at'])}</td><td>{_e(h['event'].replace('_', ' '))}</td>"
        f"<td class='num'>{_e(version_label(h['version']))}</td>"
        f"<td class='num'>{_e(version_label(h['previous']) if h.get('previous') else '')}</td>"
        f"<td>{_e(h.get('reason'))}</td></tr>"
        for h in history[:30]
    )
    return (
        "<table><tr><th>time (UTC)</th><th>event</th><th class='num'>version</th>"
        f"<th class='num'>previous</th><th>reason</th></tr>{rows}</table>"
    )


def _model(model: dict[str, Any]) -> str:
    if model.get("error"):
        return (
            f"<section><h2>{_e(model['name'])}{_badges(model)}</h2>"
            f"<p class='bad'>{_e(model['error'])}</p></section>"
        )
    return (
        f'<section id="model-{_e(model["name"])}"><h2>{_e(model["name"])}{_badges(model)}</h2>'
        f'<div class="muted">{_e(model.get("source"))} &middot; '
        f"server {_e(model.get('server'))}</div>"
        f"{_summary(model)}<h3>Revisions side by side</h3>{_metrics(model)}{_gates(model)}"
        f"<h3>Refused</h3>{_refused(model)}<h3>History</h3>{_history(model)}</section>"
    )


def _events(report: dict[str, Any]) -> str:
    """The bucket-event sources (docs/push.md): a failing one is a gap the poll covers."""
    sources = report.get("events") or []
    if not sources:
        return ""
    rows = "".join(
        f"<tr><td>{_e(s.get('name'))}</td>"
        f"<td>{'up' if s.get('up') else 'failing' if s.get('last_error') else 'starting'}</td>"
        f"<td>{_e(s.get('last_error') or '')}</td></tr>"
        for s in sources
    )
    head = "<tr><th>source</th><th>state</th><th>error</th></tr>"
    return f"<h2>Event sources</h2><table>{head}{rows}</table>"


def render(report: dict[str, Any], generated: str) -> bytes:
    """The page for a `/status` report."""
    models = _events(report) + "".join(_model(m) for m in report.get("models", []))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>modelsync</title><style>{_STYLE}</style></head><body>"
        f"<h1>modelsync</h1><div class='muted'>store {_e(report.get('store'))} &middot; "
        f"{_e(generated)} &middot; refreshes every {REFRESH_SECONDS} s</div>"
        f"{models}</body></html>"
    ).encode()
