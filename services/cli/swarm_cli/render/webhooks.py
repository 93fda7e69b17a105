"""Webhook views: one row per webhook (id, scope, events, format, URL's host), and one row
per delivery (status, attempts, the last answer or error)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from rich.markup import escape
from rich.table import Table

from swarm_cli.render.formats import ago, clock, one_line, short

__all__ = ["delivery_table", "webhook_table"]

_STATUS_STYLE = {"delivered": "green", "failed": "red", "pending": "yellow"}


def scope(hook: Mapping[str, Any]) -> str:
    if hook.get("session_id"):
        return f"session {short(hook['session_id'], 8)}"
    return f"tenant {hook['tenant']}" if hook.get("tenant") else "every tenant"


def webhook_table(hooks: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Webhooks", header_style="bold", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("scope", no_wrap=True)
    table.add_column("events", max_width=50)
    table.add_column("format", no_wrap=True)
    table.add_column("host", overflow="fold")
    table.add_column("created", no_wrap=True)
    for h in hooks:
        table.add_row(
            short(h.get("id"), 8),
            escape(scope(h)),
            escape(", ".join(h.get("events") or [])),
            escape(str(h.get("format", "?"))),
            escape(urlsplit(str(h.get("url", ""))).netloc or "?"),
            ago(h.get("created_at")),
        )
    return table


def delivery_table(deliveries: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Deliveries", header_style="bold", title_justify="left")
    table.add_column("delivery", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("last answer", overflow="fold")
    table.add_column("created", no_wrap=True)
    for d in deliveries:
        status = str(d.get("status", "?"))
        answer = d.get("last_error") or (f"HTTP {d['last_status']}" if d.get("last_status") else "")
        if status == "pending" and d.get("next_attempt_at"):
            answer = f"{answer}; next at {clock(d['next_attempt_at'])}".strip("; ")
        table.add_row(
            short(d.get("id"), 8),
            escape(str(d.get("type", "?"))),
            f"[{_STATUS_STYLE.get(status, 'white')}]{escape(status)}[/]",
            str(d.get("attempts", 0)),
            escape(one_line(answer, 100) or "-"),
            ago(d.get("created_at")),
        )
    return table
