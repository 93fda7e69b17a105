"""The inventory's view: one row per project (path, languages, build systems, files, size,
commits of the last 30 days)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

__all__ = ["inventory_table", "languages_line", "size"]


def size(n: object) -> str:
    """Bytes as `980 B`, `12.3 kB`, `4.5 MB`, `1.2 GB`."""
    if not isinstance(n, int) or n < 0:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def languages_line(languages: object, limit: int = 3) -> str:
    """`Python 75%, JavaScript 25%`: the most used first."""
    if not isinstance(languages, list) or not languages:
        return "-"
    parts = [
        f"{lang.get('name', '?')} {round(100 * float(lang.get('share') or 0))}%"
        for lang in languages[:limit]
        if isinstance(lang, Mapping)
    ]
    return ", ".join(parts) or "-"


def inventory_table(projects: Iterable[Mapping[str, Any]], *, title: str = "Inventory") -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    table.add_column("path", overflow="fold")
    table.add_column("languages", max_width=26)
    table.add_column("build systems", max_width=18)
    table.add_column("files", justify="right", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("commits 30d", justify="right")
    for p in projects:
        commits = p.get("commits_30d")
        table.add_row(
            escape(str(p.get("path", "?"))),
            escape(languages_line(p.get("languages"))),
            escape(", ".join(str(b) for b in p.get("build_systems") or []) or "-"),
            str(p.get("files", "-")),
            size(p.get("size_bytes")),
            "-" if commits is None else str(commits),
        )
    return table
