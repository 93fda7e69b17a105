"""Views of tasks: the tasks table, one task's panel, its attempts, its gates and the
files it changed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from swarm_cli.render.formats import (
    between,
    duration,
    failure,
    local_time,
    money,
    one_line,
    short,
    tokens,
    usage_line,
)
from swarm_cli.render.states import state

__all__ = [
    "attempts_table",
    "comments_table",
    "diff_table",
    "gates_table",
    "reviews_table",
    "task_panel",
    "task_table",
]


def task_table(tasks: Iterable[Mapping[str, Any]]) -> Table:
    """Tasks, one a row; token and cost columns when an agent reported any."""
    rows = list(tasks)
    spend = any(t.get("tokens") or t.get("cost_usd") is not None for t in rows)
    table = Table(header_style="bold")
    columns = ["key", "status", "agent", "attempt", "depends on", "took", "commit", "reason"]
    for column in columns + (["tokens", "cost"] if spend else []):
        table.add_column(column, no_wrap=column in ("key", "status"))
    for t in rows:
        commit = ((t.get("result") or {}).get("commit") or "")[:10]
        took = between(t.get("started_at"), t.get("finished_at")) if t.get("started_at") else None
        cells = [
            escape(str(t["key"])),
            state(str(t["status"])),
            escape(str(t["agent"])),
            str(t["attempt"]),
            escape(", ".join(t.get("depends_on", []))),
            duration(took),
            commit,
            escape((t.get("reason") or "")[:60]),
        ]
        if spend:
            cells += [tokens(t.get("tokens") or t.get("usage")), money(t.get("cost_usd"))]
        table.add_row(*cells)
    return table


def _spec_rows(fields: Table, task: Mapping[str, Any]) -> None:
    """Who the task runs as, and how its work is judged (its persona, review, race)."""
    spec = task.get("spec") or {}
    persona = spec.get("assigned_persona") or {}
    if persona.get("name"):
        who = f"{persona.get('author_name') or persona['name']} ({persona['name']}"
        fields.add_row("persona", escape(who + f", {persona.get('role') or '?'})"))
    if isinstance(spec.get("review"), dict):
        review = spec["review"]
        rounds = f"round {task.get('review_round', 0)} of {review.get('max_rounds', '?')}"
        fields.add_row("review", escape(f"{review.get('agent', 'auto')} reviewer, {rounds}"))
    if isinstance(spec.get("race"), dict):
        fields.add_row("race", escape(f"best of {spec['race'].get('n')}"))
    if spec.get("verify"):
        fields.add_row("verifier", "answers a verdict on the merged work")


def task_panel(task: Mapping[str, Any], *, session_title: str | None = None) -> Panel:
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    status = state(str(task["status"]))
    if task.get("reason"):
        status += f"  [dim]{escape(str(task['reason']))}[/]"
    fields.add_row("status", status)
    if task.get("retry_at") and task["status"] == "pending":
        fields.add_row("retry at", local_time(task["retry_at"]))
    session = str(task["session_id"])
    if session_title:
        session += f"  ({escape(session_title)})"
    fields.add_row("session", session)
    agent = str(task["agent"]) + (f" as {task['role']}" if task.get("role") else "")
    fields.add_row("agent", escape(agent))
    _spec_rows(fields, task)
    fields.add_row("attempt", f"{task['attempt']}  [dim](max_attempts {task['max_attempts']})[/]")
    if task.get("depends_on"):
        fields.add_row("depends on", escape(", ".join(task["depends_on"])))
    fields.add_row("branch", escape(str(task.get("branch") or "-")))
    if task.get("merge_status"):
        merge = str(task["merge_status"])
        if task.get("merge_commit"):
            merge += f" ({short(task['merge_commit'])})"
        fields.add_row("merge", escape(merge))
    if task.get("conflict_files"):
        fields.add_row("conflicts", escape(", ".join(map(str, task["conflict_files"]))))
    _gate_rows(fields, task)
    fields.add_row("created", local_time(task.get("created_at")))
    if task.get("started_at"):
        took = between(task["started_at"], task.get("finished_at"))
        fields.add_row("started", f"{local_time(task['started_at'])}  (took {duration(took)})")
    if usage_line(task):
        fields.add_row("usage", usage_line(task))
    prompt = str(task.get("prompt") or "")
    if prompt:
        lines = prompt.splitlines() or [""]
        shown = "\n".join(lines[:6]) + (
            f"\n… ({len(lines) - 6} more lines)" if len(lines) > 6 else ""
        )
        fields.add_row("prompt", escape(shown))
    _handoff_rows(fields, task.get("handoff"))
    title = f"[bold]{escape(str(task['key']))}[/]"
    if task.get("title") and task["title"] != task["key"]:
        title += f"  {escape(str(task['title']))}"
    return Panel(fields, title=title, subtitle=str(task["id"]), title_align="left", expand=False)


def _gate_rows(fields: Table, task: Mapping[str, Any]) -> None:
    """Why its work waits for a person, and what a dry run's would have merged."""
    if task.get("approval_reason"):
        fields.add_row("approval", escape(str(task["approval_reason"])))
    would = task.get("would_merge")
    if would:
        stat = would.get("diffstat") or {}
        fields.add_row(
            "would merge",
            escape(
                f"{short(would.get('commit'))}: {stat.get('files', 0)} files "
                f"+{stat.get('added', 0)} -{stat.get('deleted', 0)}, "
                + ("clean" if would.get("clean") else "conflicts")
            ),
        )


def _handoff_rows(fields: Table, handoff: Mapping[str, Any] | None) -> None:
    """What a succeeded task handed on: its summary, notes, facts and proposals."""
    if not handoff:
        return
    if handoff.get("summary"):
        fields.add_row("handoff", escape(str(handoff["summary"])[:1000]))
    for note in handoff.get("notes") or []:
        fields.add_row("", escape(f"- {note}"))
    facts = handoff.get("facts") or []
    if facts:
        fields.add_row("facts", escape(", ".join(str(f.get("key")) for f in facts)))
    proposals = handoff.get("proposals") or []
    if proposals:
        fields.add_row("proposed", escape(", ".join(str(p.get("title")) for p in proposals)))


def attempts_table(attempts: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Attempts", header_style="bold", title_justify="left")
    for column in ("#", "status", "worker", "started", "took", "exit", "reason", "tokens", "cost"):
        table.add_column(column, no_wrap=column != "reason")
    for a in attempts:
        took = between(a.get("started_at"), a.get("finished_at")) if a.get("started_at") else None
        reason = failure(a.get("reason"), a.get("error"))
        exit_code = a.get("exit_code")
        table.add_row(
            str(a["number"]),
            state(str(a["status"])),
            escape(str(a.get("worker") or "-")),
            local_time(a.get("started_at")),
            duration(took),
            "-" if exit_code is None else str(exit_code),
            escape(one_line(reason, 70)) or "-",
            tokens(a.get("usage")),
            money(a.get("cost_usd")),
        )
    return table


def reviews_table(reviews: Iterable[Mapping[str, Any]]) -> Table:
    """Reviewers' verdicts, one row per review round, with the issues that decided it."""
    table = Table(title="Reviews", header_style="bold", title_justify="left")
    for column in ("round", "attempt", "reviewer", "verdict", "when", "summary and issues"):
        table.add_column(column, no_wrap=column != "summary and issues")
    for r in reviews:
        who = str(r.get("agent") or "?") + (f" ({r['persona']})" if r.get("persona") else "")
        lines = [one_line(str(r.get("summary") or ""), 100)]
        lines += [f"✗ {one_line(str(i), 100)}" for i in r.get("critical_issues") or []]
        lines += [f"· {one_line(str(i), 100)}" for i in r.get("recommendations") or []]
        table.add_row(
            str(r.get("round", "?")),
            str(r.get("attempt", "?")),
            escape(who),
            state(str(r.get("verdict", "?"))),
            local_time(r.get("created_at")),
            escape("\n".join(line for line in lines if line)),
        )
    return table


def comments_table(comments: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Comments", header_style="bold", title_justify="left")
    for column in ("when", "author", "changes?", "comment"):
        table.add_column(column, no_wrap=column != "comment")
    for c in comments:
        table.add_row(
            local_time(c.get("created_at")),
            escape(str(c.get("author") or "?")),
            "requested" if c.get("request_changes") else "-",
            escape(str(c.get("body") or "")),
        )
    return table


def gates_table(gates: Iterable[Mapping[str, Any]], *, attempt: int | None = None) -> Table:
    title = "Gates" + (f" (attempt {attempt})" if attempt else "")
    table = Table(title=title, header_style="bold", title_justify="left")
    for column in ("gate", "status", "exit", "took", "command"):
        table.add_column(column, no_wrap=column != "command")
    for g in gates:
        exit_code = g.get("exit_code")
        table.add_row(
            escape(str(g.get("name", "?"))),
            state(str(g.get("status", "?"))),
            "-" if exit_code is None else str(exit_code),
            duration(g.get("duration_s")),
            escape(one_line(g.get("command") or g.get("reason") or "", 60)),
        )
    return table


def diff_table(diff: Mapping[str, Any]) -> RenderableType:
    files = diff.get("files") or []
    added = sum(int(f.get("additions") or 0) for f in files)
    removed = sum(int(f.get("deletions") or 0) for f in files)
    title = f"[bold]Changes[/] of attempt {diff.get('attempt')} ({short(diff.get('commit'))})"
    if not files:
        return Text.from_markup(f"{title}: none")
    title += f": {len(files)} file(s), [green]+{added}[/] [red]-{removed}[/]"
    table = Table(header_style="bold")
    table.add_column("file", overflow="fold")
    table.add_column("+", justify="right", style="green")
    table.add_column("-", justify="right", style="red")
    for f in files:
        binary = f.get("additions") is None
        table.add_row(
            escape(str(f["path"])),
            "bin" if binary else str(f["additions"]),
            "" if binary else str(f.get("deletions") or 0),
        )
    return Group(Text.from_markup(title), table)
