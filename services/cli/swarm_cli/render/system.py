"""Views of the deployment: the adapters (workers), the system mode, and API tokens."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from swarm_cli.render.formats import ago, between, clock, duration, short
from swarm_cli.render.states import state

__all__ = ["system_panel", "token_table", "workers_table"]


def workers_table(workers: Iterable[Mapping[str, Any]]) -> Table:
    """One row an adapter; the `version` and `can` columns (what it announced: CLI version,
    capabilities, models) only when some adapter announced any (shell adapters do not)."""
    rows = list(workers)
    announced = any(w.get("cli_version") or _can(w) != "-" for w in rows)
    table = Table(title="Workers", header_style="bold", title_justify="left")
    columns = ["name", "agent", "status", "busy", "running", "heartbeat"]
    columns += ["version", "can"] if announced else []
    for column in (*columns, "host", "up"):
        table.add_column(column, no_wrap=column not in ("running", "host", "can", "version"))
    for w in rows:
        alive = bool(w.get("alive"))
        status = str(w.get("status", "?"))
        label = state("online" if alive else "offline", "alive" if alive else f"{status}, gone")
        if w.get("kind_paused_until"):  # its kind keeps hitting its provider's limits
            label += " " + state("paused", f"(kind paused until {clock(w['kind_paused_until'])})")
        running: list[Any] = w["running"] if isinstance(w.get("running"), list) else []
        tasks = ", ".join(
            f"{r.get('task_key') or short(r.get('task_id'), 8)}#{r.get('attempt', '?')}"
            for r in running
        )
        beat = w.get("last_heartbeat_at") or w.get("last_seen_at")
        host = str(w.get("host") or "-") + (f" pid {w['pid']}" if w.get("pid") else "")
        said = [escape(str(w.get("cli_version") or "-")), escape(_can(w))] if announced else []
        table.add_row(
            escape(str(w["name"])),
            escape(str(w.get("agent", "?"))),
            label,
            f"{len(running)}/{w.get('concurrency', '?')}",
            escape(tasks) or "-",
            ago(beat),
            *said,
            escape(host),
            duration(between(w.get("started_at"))) if alive else "-",
        )
    return table


_CAN = {"structured_output": "schema", "allowed_tools": "tools", "read_only": "read-only"}
"""Capabilities in few words (`prose`, which every agent CLI has, is left out)."""


def _can(worker: Mapping[str, Any]) -> str:
    """Its capabilities, and the models it may use: `schema read-only · gpt-5.5`."""
    can = [_CAN.get(str(c), str(c)) for c in worker.get("capabilities") or () if c != "prose"]
    models = [str(m) for m in worker.get("models") or ()]
    return " · ".join(filter(None, (" ".join(sorted(can)), ", ".join(models)))) or "-"


_MODE_TEXT = {
    "running": "adapters take work",
    "draining": "adapters finish what they run and take nothing new",
    "stopped": "emergency stop: no agent runs; interrupted attempts run again after resume",
}


def system_panel(system: Mapping[str, Any]) -> Panel:
    mode = str(system.get("mode", "?"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    style_key = "running_mode" if mode == "running" else mode
    grid.add_row("mode", f"{state(style_key, mode)}  [dim]{_MODE_TEXT.get(mode, '')}[/]")
    if system.get("changed_by"):
        grid.add_row(
            "set by", f"{escape(str(system['changed_by']))}, {ago(system.get('changed_at'))}"
        )
    grid.add_row("running", str(system.get("running", 0)))
    grid.add_row("queued", str(system.get("queued", 0)))
    grid.add_row("workers", f"{system.get('workers_alive', 0)} alive")
    return Panel(grid, title="[bold]System[/]", title_align="left", expand=False)


def token_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Tokens")
    for column in ("id", "name", "role", "tenant", "prefix", "created", "last used", "revoked"):
        table.add_column(column)
    for t in rows:
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
