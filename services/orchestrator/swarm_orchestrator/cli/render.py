"""Rich tables for the CLI's listings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.markup import escape
from rich.table import Table

__all__ = ["STATE_STYLE", "session_table", "status_table", "task_table", "token_table"]

STATE_STYLE = {
    "pending": "dim",
    "queued": "cyan",
    "running": "bold blue",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "blocked": "magenta",
    "awaiting_approval": "bold yellow",
    "active": "blue",
    "draft": "dim",
}
STATE_ORDER = [
    "pending",
    "queued",
    "running",
    "awaiting_approval",
    "succeeded",
    "failed",
    "cancelled",
    "blocked",
]


def _state(value: str) -> str:
    style = STATE_STYLE.get(value, "")
    return f"[{style}]{value}[/]" if style else value


def _counts(counts: dict[str, int]) -> str:
    return " ".join(f"{_state(s)}={counts[s]}" for s in STATE_ORDER if counts.get(s))


def session_table(sessions: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Sessions", header_style="bold")
    for column in ("id", "title", "status", "tasks", "by state", "created"):
        table.add_column(column)
    for s in sessions:
        status = s["status"] + (" (done)" if s.get("done") else "")
        table.add_row(
            s["id"],
            escape(s["title"]),
            _state(status) if not s.get("done") else status,
            str(s.get("total", 0)),
            _counts(s.get("counts", {})),
            s["created_at"][:19].replace("T", " "),
        )
    return table


def status_table(session: dict[str, Any]) -> Table:
    table = Table(title=f"{escape(session['title'])}  ({session['id']})", header_style="bold")
    table.add_column("state")
    table.add_column("tasks", justify="right")
    counts = session.get("counts", {})
    for state in STATE_ORDER:
        if counts.get(state):
            table.add_row(_state(state), str(counts[state]))
    table.add_row("[bold]total[/]", str(session.get("total", 0)))
    return table


def task_table(tasks: Iterable[dict[str, Any]]) -> Table:
    table = Table(header_style="bold")
    for column in ("key", "status", "agent", "attempt", "depends on", "commit", "reason"):
        table.add_column(column)
    for t in tasks:
        commit = ((t.get("result") or {}).get("commit") or "")[:10]
        table.add_row(
            t["key"],
            _state(t["status"]),
            t["agent"],
            str(t["attempt"]),
            ", ".join(t.get("depends_on", [])),
            commit,
            escape((t.get("reason") or "")[:60]),
        )
    return table


def token_table(tokens: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="Tokens")
    for column in ("id", "name", "role", "tenant", "prefix", "created", "last used", "revoked"):
        table.add_column(column)
    for t in tokens:
        table.add_row(
            str(t["id"]),
            escape(t["name"]),
            t["role"],
            escape(t["tenant"] or "-"),
            escape(t["prefix"]) + "…",
            (t["created_at"] or "")[:19],
            (t["last_used_at"] or "-")[:19],
            (t["revoked_at"] or "-")[:19],
        )
    return table
