"""`swarm dry-run SESSION`: what each task of a dry run would have merged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from swarm_cli import refs
from swarm_cli.options import ApiUrl, AsJson, Token, connect, console, print_json
from swarm_cli.render.formats import short
from swarm_cli.render.states import state
from swarm_cli.sessions import SessionArg

__all__ = ["dry_run"]


def dry_run(
    session: SessionArg,
    api_url: ApiUrl = None,
    token: Token = None,
    files: Annotated[bool, typer.Option(help="List each task's files too.")] = False,
    as_json: AsJson = False,
) -> None:
    """What each task of a dry run would have merged: its commit, files and lines, whether it
    merges cleanly after the tasks before it, and the policies it crosses. The integration
    and target branches of a dry run never move."""
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        report: dict[str, Any] = client.get(f"/v1/sessions/{sid}/dry-run")
    if as_json:
        print_json(report)
        return
    if not report.get("dry_run"):
        console.print(f"Session {sid} is not a dry run: its tasks merge for real.")
        return
    summary = report.get("summary") or {}
    console.print(
        f"Dry run {sid} ({state(str(report['status']))}): {summary.get('tasks', 0)} task(s) "
        f"would merge, {summary.get('clean', 0)} cleanly, {summary.get('conflicted', 0)} "
        f"with conflicts; {summary.get('files', 0)} files +{summary.get('added', 0)} "
        f"-{summary.get('deleted', 0)}. Integration head {short(report.get('integration_head'))}"
        f" and target {escape(str(report.get('target_branch') or '-'))} are untouched.",
        highlight=False,
    )
    console.print(_table(report.get("tasks") or [], files=files))


def _table(tasks: list[Mapping[str, Any]], *, files: bool) -> Table:
    table = Table(header_style="bold")
    for column in ("task", "status", "commit", "files", "lines", "merges", "notes"):
        table.add_column(column, overflow="fold", no_wrap=column in ("task", "commit", "lines"))
    for task in tasks:
        would = task.get("would_merge") or {}
        stat = would.get("diffstat") or {}
        table.add_row(
            escape(str(task["key"])),
            state(str(task["status"])),
            short(would.get("commit")) if would else "-",
            str(stat.get("files", "-")),
            f"+{stat.get('added', 0)} -{stat.get('deleted', 0)}" if stat else "-",
            _merges(task, would),
            escape(_notes(would, files=files)),
        )
    return table


def _merges(task: Mapping[str, Any], would: Mapping[str, Any]) -> str:
    if not would:
        return "[dim]nothing to merge[/]" if task.get("merge_status") == "empty" else "[dim]-[/]"
    if would.get("clean"):
        return "[green]clean[/]"
    return "[red]conflict[/]"


def _notes(would: Mapping[str, Any], *, files: bool) -> str:
    notes = []
    if would.get("conflicts"):
        notes.append("conflicts in " + ", ".join(map(str, would["conflicts"][:10])))
    for violation in would.get("violations") or []:
        notes.append("would wait for approval: " + str(violation.get("reason")))
    if would.get("error"):
        notes.append(str(would["error"])[:300])
    if files:
        for f in would.get("files") or []:
            lines = f"+{f.get('added', '?')} -{f.get('deleted', '?')}"
            moved = f" (from {f['old_path']})" if f.get("old_path") else ""
            notes.append(f"{f.get('status')} {f.get('path')}{moved} {lines}")
    return "\n".join(notes)
