"""`modelsync status` for people: the report of modelsync.status as text lines."""

from __future__ import annotations

from typing import Any

from modelsync.status import version_label

__all__ = ["status_lines"]


def status_lines(report: dict[str, Any]) -> list[str]:
    """One block of lines per model: what it serves, where from, what waits or failed."""
    lines: list[str] = []
    for entry in report["models"]:
        lines.append(
            f"{entry['name']}: active {version_label(entry.get('active_version'))}"
            f" (activated {entry.get('activated_at') or '-'},"
            f" created {entry.get('created') or '-'})"
        )
        lines.append(f"  source    {entry['source']} (server: {entry['server']})")
        retained = ", ".join(version_label(v) for v in entry.get("retained") or ())
        lines.append(f"  retained  {retained or '-'}")
        channel = entry.get("channel")
        if channel:
            lines.append(f"  channel   {_channel_line(channel)}")
        if entry.get("off_channel"):
            lines.append(f"  not on it {entry['off_channel']}")
        if entry.get("rollback_failed"):
            lines.append("  ROLLBACK FAILED: the previous revision did not confirm; see server")
        elif entry.get("active_version") and entry.get("confirmed") is False:
            lines.append("  unconfirmed: the server has not confirmed the active revision yet")
        if entry.get("server_reason"):
            lines.append(f"  server    {entry['server_reason']}")
        waiting = entry.get("waiting")
        if waiting:
            lines.append(
                f"  waiting   {version_label(waiting['version'])} since {waiting['since']}: "
                f"{waiting['reason']}"
            )
        for version, count in (entry.get("unknown_outcomes") or {}).items():
            lines.append(
                f"  no verdict {version}: {count} rollback(s) without the server's verdict"
            )
        for version, reason in (entry.get("refused") or {}).items():
            lines.append(f"  refused   {version_label(int(version))}: {reason}")
        if entry.get("pinned") is not None:
            lines.append(f"  pinned    {version_label(entry['pinned'])}")
        if entry.get("last_error") or entry.get("error"):
            lines.append(f"  error     {entry.get('last_error') or entry.get('error')}")
    return lines


def _channel_line(channel: dict[str, Any]) -> str:
    """What a model's release channel asks of this host, in one line."""
    canary = "no canary"
    if channel.get("canary") is not None:
        cohort = "this host in its cohort" if channel.get("in_cohort") else "not this host"
        halted = ", HALTED" if channel.get("halted") else ""
        canary = f"canary {channel['canary']} at {channel['percent']:g} %, {cohort}{halted}"
    target = channel.get("target")
    return (
        f"{channel['channel']} asks for {target if target is not None else 'nothing'} "
        f"(stable {channel.get('stable') or '-'}; {canary})"
    )
