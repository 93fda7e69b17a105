"""The usage view: one row per group (session, task, agent kind, persona, tenant or day)
with its attempts, tokens and cost, and a total row; and the price table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

from swarm_cli.render.formats import money, short, tokens

__all__ = ["prices_table", "usage_table"]

_HEADINGS = {
    "session": "session",
    "task": "task",
    "agent": "agent",
    "persona": "persona",
    "tenant": "tenant",
    "day": "day (UTC)",
}


def _name(group: str, row: Mapping[str, Any]) -> str:
    key, label = row.get("key"), row.get("label")
    if key is None:
        return "[dim](none)[/]"
    if group in ("session", "task"):
        shown = f"{escape(str(label))} " if label else ""
        return f"{shown}[dim]{escape(short(key, 8))}[/]"
    return escape(str(key))


def _cells(row: Mapping[str, Any]) -> list[str]:
    return [
        str(row.get("attempts", 0)),
        tokens(row.get("input")),
        tokens(row.get("cached_input")),
        tokens(row.get("output")),
        money(row.get("cost_usd")),
        money(row.get("reported_cost_usd")),
    ]


def usage_table(body: Mapping[str, Any]) -> Table:
    group = str(body.get("group_by", "session"))
    table = Table(title=f"Usage by {group}", header_style="bold", title_justify="left")
    table.add_column(_HEADINGS.get(group, group), overflow="fold")
    for heading in ("attempts", "input", "cached", "output"):
        table.add_column(heading, justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("CLI said", justify="right", no_wrap=True, style="dim")
    rows: Iterable[Mapping[str, Any]] = body.get("rows") or []
    for row in rows:
        table.add_row(_name(group, row), *_cells(row))
    total = body.get("total")
    if isinstance(total, Mapping):
        table.add_section()
        table.add_row("[bold]total[/]", *_cells(total))
    return table


def prices_table(body: Mapping[str, Any]) -> Table:
    overrides = body.get("overrides") or {}
    table = Table(
        title=f"Prices as of {escape(str(body.get('as_of', '?')))} (USD per million tokens)",
        header_style="bold",
        title_justify="left",
    )
    table.add_column("model (prefix)")
    for heading in ("input", "cached input", "output"):
        table.add_column(heading, justify="right", no_wrap=True)
    table.add_column("", style="yellow")
    for name, price in sorted((body.get("models") or {}).items()):
        table.add_row(
            escape(name),
            *(f"{float(price.get(k, 0)):g}" for k in ("input", "cached_input", "output")),
            "SWARM_PRICES" if name in overrides else "",
        )
    return table
