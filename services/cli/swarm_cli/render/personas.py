"""The persona catalogue's views: one row per persona (name, role, skills, preferred agents,
commit author), and one persona in full."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

__all__ = ["persona_table", "persona_panel"]


def _joined(values: object) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) and values else "-"


def persona_table(people: Iterable[Mapping[str, Any]], *, title: str = "Personas") -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("skills", max_width=40)
    table.add_column("agents", max_width=24)
    table.add_column("author", overflow="fold")
    for p in people:
        table.add_row(
            escape(str(p.get("name", "?"))),
            escape(str(p.get("role", "?"))),
            escape(_joined(p.get("skills"))),
            escape(_joined(p.get("agents"))),
            escape(str(p.get("author_name", "?"))),
        )
    return table


def persona_panel(p: Mapping[str, Any]) -> Table:
    """One persona, a field per line."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    source = str(p.get("source", "?"))
    if p.get("seed") is not None:
        source += f" (seed {p['seed']})"
    rows = [
        ("name", str(p.get("name", "?"))),
        ("tenant", str(p.get("tenant") or "- (shared)")),
        ("role", str(p.get("role", "?"))),
        ("skills", _joined(p.get("skills"))),
        ("agents", _joined(p.get("agents"))),
        ("commits as", f"{p.get('author_name', '?')} <{p.get('author_email', '?')}>"),
        ("style", str(p.get("style") or "-")),
        ("source", source),
        ("updated", str(p.get("updated_at", "-"))),
    ]
    for label, value in rows:
        grid.add_row(label, escape(value))
    return grid
