"""Views of sessions: their status as people think of it, task counts, the sessions
table, the progress bar, and one session's panel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from swarm_cli.render.formats import ago, between, duration, local_time, one_line, short, usage_line
from swarm_cli.render.states import ENDED_STATES, STATE_ORDER, state

__all__ = [
    "counts_line",
    "progress_line",
    "session_label",
    "session_panel",
    "session_state",
    "session_table",
]


def session_label(session: Mapping[str, Any]) -> str:
    """The session's status as people think of it: an active session whose tasks all
    ended is `finished`."""
    status = str(session.get("status", "?"))
    if status == "active" and session.get("done"):
        return "finished"
    return status


def session_state(session: Mapping[str, Any]) -> str:
    """The session's status as markup: `finished` green when every task succeeded, yellow
    when some did not."""
    label = session_label(session)
    if label != "finished":
        return state(label)
    counts = session.get("counts") or {}
    clean = all(n == 0 for s, n in counts.items() if s != "succeeded")
    return f"[{'green' if clean else 'yellow'}]finished[/]"


def counts_line(counts: Mapping[str, int]) -> str:
    shown = [s for s in STATE_ORDER if counts.get(s)]
    shown += sorted(s for s in counts if s not in STATE_ORDER and counts[s])
    return "  ".join(f"{state(s)} {counts[s]}" for s in shown) or "[dim]no tasks[/]"


def _ended(counts: Mapping[str, int]) -> int:
    return sum(n for s, n in counts.items() if s in ENDED_STATES)


def session_table(sessions: Iterable[Mapping[str, Any]], *, short_ids: bool = False) -> Table:
    """Sessions, one a row; `short_ids` shows ids by their first 8 characters (which every
    command takes), for a narrow terminal."""
    table = Table(title="Sessions", header_style="bold", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("title", overflow="fold", min_width=12)
    table.add_column("status", no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("running", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("age", justify="right", no_wrap=True)
    for s in sessions:
        counts = s.get("counts") or {}
        failed = counts.get("failed", 0)
        table.add_row(
            str(s["id"])[:8] if short_ids else str(s["id"]),
            escape(str(s.get("title", ""))),
            session_state(s),
            f"{_ended(counts)}/{s.get('total', 0)}",
            str(counts.get("running", 0) or "-"),
            f"[bold red]{failed}[/]" if failed else "-",
            duration(between(s.get("created_at"))),
        )
    return table


def progress_line(
    progress: Mapping[str, Any], *, width: int = 40, now: datetime | None = None
) -> Table:
    """A bar of ended/total with the percentage, the elapsed time and the ETA."""
    total = int(progress.get("total") or 0)
    ended = int(progress.get("ended") or 0)
    percent = progress.get("percent")
    if percent is None:
        percent = 100.0 * ended / total if total else 0.0
    elapsed = progress.get("elapsed_s")
    if elapsed is None:
        elapsed = between(progress.get("started_at"), progress.get("finished_at"), now=now)
    eta = progress.get("eta_s")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    finished = total > 0 and ended >= total
    bar = ProgressBar(
        total=max(total, 1), completed=ended, width=width, finished_style="green", style="grey23"
    )
    times = f"elapsed {duration(elapsed)}"
    if not finished:
        times += f"  ETA {duration(eta) if eta is not None else '?'}"
    grid.add_row(bar, f"[bold]{ended}/{total}[/] {float(percent):.0f}%  {times}")
    return grid


def session_panel(session: Mapping[str, Any], progress: Mapping[str, Any]) -> Panel:
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    fields.add_row("status", session_state(session))
    if session.get("review_reason"):
        fields.add_row("review", escape(one_line(str(session["review_reason"]), 300)))
    if session.get("suspended_reason"):
        fields.add_row("suspended", escape(one_line(str(session["suspended_reason"]), 300)))
    if session.get("archived_at"):
        fields.add_row("archived", local_time(session.get("archived_at")))
    fields.add_row("repo", escape(f"{session.get('repo', '')} @ {session.get('base_ref', '')}"))
    if session.get("integration_branch"):
        head = short(session.get("integration_head"))
        fields.add_row("integration", escape(f"{session['integration_branch']} ({head})"))
    if session.get("target_branch"):
        fields.add_row("target", escape(str(session["target_branch"])))
    fields.add_row(
        "created", f"{local_time(session.get('created_at'))} ({ago(session.get('created_at'))})"
    )
    if session.get("finished_at"):
        fields.add_row("finished", local_time(session.get("finished_at")))
    if session.get("goal"):
        fields.add_row("goal", escape(one_line(session["goal"], 200)))
    usage = usage_line(progress)
    parts: list[RenderableType] = [
        fields,
        Text(""),
        progress_line(progress),
        counts_line(progress.get("counts") or session.get("counts") or {}),
    ]
    if usage:
        parts.append(usage)
    title = f"[bold]{escape(str(session.get('title', '')))}[/]  {session.get('id')}"
    return Panel(Group(*parts), title=title, title_align="left", expand=False)
