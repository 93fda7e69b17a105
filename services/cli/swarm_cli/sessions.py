"""Client commands about sessions: `submit`, `add`, `export`, `status`, `tasks`, `watch`,
`pause`, `resume`."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from swarm_cli import refs, render
from swarm_cli.client import ApiClient, CliError
from swarm_cli.options import (
    ApiUrl,
    AsJson,
    Token,
    connect,
    console,
    err,
    print_json,
)

__all__ = ["add", "export", "pause", "resume", "status", "submit", "tasks", "watch"]


class FileFormat(StrEnum):
    YAML = "yaml"
    JSON = "json"


WIDE_TABLE = 110
"""Below this many columns, the session table shows short ids."""

SessionArg = Annotated[
    str,
    typer.Argument(
        metavar="SESSION", help="A session id, or its first characters.", show_default=False
    ),
]


def submit(
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="[FILE|PROMPT]",
            help="A task graph file (YAML or JSON), or one prompt: a session of one task. "
            "With --template builder-validator: the file whose tasks get reviewers.",
            show_default=False,
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            help="Expand a topology into the graph: fan-out (--goal, --worker …), pipeline "
            "(--phase …), builder-validator (FILE's tasks, each with a reviewer).",
            rich_help_panel="Templates",
        ),
    ] = None,
    goal: Annotated[
        str | None,
        typer.Option(help="The session's goal (a fan-out's).", rich_help_panel="Templates"),
    ] = None,
    worker: Annotated[
        list[str] | None,
        typer.Option(
            metavar="WHO[@AGENT]:PROMPT",
            help="A fan-out worker: a persona role or name, its agent kind (auto), its part.",
            rich_help_panel="Templates",
        ),
    ] = None,
    phase: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME[@AGENT]:PROMPT",
            help="A pipeline phase, in order.",
            rich_help_panel="Templates",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the graph the template expands into (a graph file, to edit and "
            "submit) and send nothing.",
            rich_help_panel="Templates",
        ),
    ] = False,
    agent: Annotated[
        str | None,
        typer.Option(help="For a prompt: its agent (claude, codex, gemini, shell). [claude]"),
    ] = None,
    priority: Annotated[
        str | None,
        typer.Option(help="For a prompt: low, normal, high, urgent, or a number. [normal]"),
    ] = None,
    repo: Annotated[
        str | None, typer.Option(help="For a prompt: the repository, a path or git URL. [.]")
    ] = None,
    base: Annotated[str, typer.Option(help="For a prompt: branch or commit to start from.")] = (
        "HEAD"
    ),
    api_url: ApiUrl = None,
    token: Token = None,
    wait: Annotated[bool, typer.Option(help="Follow the session until it is done.")] = False,
    as_json: AsJson = False,
) -> None:
    """Create a session from a task graph file, of one task from a prompt, or from a
    template (a topology), and print its id."""
    from swarm_cli.plans import submit_prompt
    from swarm_cli.taskfile import load_taskfile

    if template is not None:
        from swarm_cli.taskfile import dump_taskfile
        from swarm_cli.templates import graph_file, template_body

        body = template_body(
            template,
            source=source,
            goal=goal,
            workers=worker or [],
            phases=phase or [],
            repo=repo or ".",
            base=base,
        )
        if dry_run:
            graph = graph_file(body)
            sys.stdout.write(dump_taskfile(graph, "json" if as_json else "yaml"))
            return
        with connect(api_url, token) as client:
            session = client.post("/v1/sessions", body)
            if wait:
                from swarm_cli.watch import follow

                session = follow(client, session["id"], err)
        if as_json:
            print_json(session)
        else:
            sys.stdout.write(session["id"] + "\n")
        return
    if goal is not None or worker or phase or dry_run:
        raise CliError("--goal, --worker, --phase and --dry-run go with --template")
    if source is None:
        raise CliError("give a FILE or a PROMPT, or --template NAME")
    path = Path(source)
    prompted = agent is not None or priority is not None or repo is not None
    is_file = "\n" not in source and len(source) < 4096 and path.is_file()
    if is_file and prompted:
        raise CliError("--agent, --priority and --repo are for a prompt, not a graph file")
    if not is_file and source.endswith((".yaml", ".yml", ".json")) and not prompted:
        raise CliError(f"cannot read {source}: no such file")
    with connect(api_url, token) as client:
        if is_file:
            session = client.post("/v1/sessions", load_taskfile(path))
        else:
            session = submit_prompt(
                source,
                agent=agent or "claude",
                priority=priority or "normal",
                repo=repo or ".",
                base=base,
                client=client,
            )
        if wait:
            from swarm_cli.watch import follow

            session = follow(client, session["id"], err)
    if as_json:
        print_json(session)
    else:
        sys.stdout.write(session["id"] + "\n")


def add(
    session: SessionArg,
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="Tasks (YAML or JSON): a list, or a graph file.")
    ],
    reopen: Annotated[
        bool, typer.Option(help="Run a finalized session again with these tasks.")
    ] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Add tasks to a session; they may depend on its tasks (they run once those have). A
    finalized session takes them only with --reopen."""
    from swarm_cli.taskfile import load_tasks

    tasks = load_tasks(file)
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        added: list[dict[str, Any]] = client.request(
            "POST",
            f"/v1/sessions/{sid}/tasks",
            json=tasks,
            params={"reopen": "true"} if reopen else None,
        )
    if as_json:
        print_json(added)
        return
    keys = ", ".join(escape(str(t["key"])) for t in added[:20])
    more = f" and {len(added) - 20} more" if len(added) > 20 else ""
    console.print(f"Added {len(added)} task(s) to {sid}: {keys}{more}", highlight=False)


def export(
    session: SessionArg,
    fmt: Annotated[FileFormat, typer.Option("--format", help="yaml or json.")] = FileFormat.YAML,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", metavar="S", help="Only tasks in this state (repeatable)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
    ] = None,
    api_url: ApiUrl = None,
    token: Token = None,
) -> None:
    """Write a session as a task graph file that `swarm submit` reads back into the same
    graph (tasks' status, merge status and result are included, and ignored on submit)."""
    from swarm_cli.taskfile import dump_taskfile

    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        graph = client.get(f"/v1/sessions/{sid}/graph", status=status or None)
    text = dump_taskfile(graph, fmt.value)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror}") from None
    err.print(f"Wrote {len(graph['tasks'])} task(s) of {sid} to {output}", highlight=False)


def status(
    session: Annotated[
        str | None,
        typer.Argument(
            metavar="SESSION", help="A session id (or its first characters); all when left out."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest sessions shown.")] = 20,
    archived: Annotated[
        bool, typer.Option("--archived", help="List the archived sessions instead.")
    ] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Sessions at a glance (status, tasks done of all, running, failed, age), or one
    session in detail with its progress. Archived sessions are listed only with
    --archived."""
    with connect(api_url, token) as client:
        if session is None:
            _list_sessions(client, limit=limit, archived=archived, as_json=as_json)
        else:
            _show_session(client, refs.session_id(client, session), as_json=as_json)


def _list_sessions(client: ApiClient, *, limit: int, archived: bool, as_json: bool) -> None:
    sessions = client.get("/v1/sessions", limit=limit, archived="true" if archived else None)
    if as_json:
        print_json(sessions)
    elif not sessions:
        err.print(
            "No archived sessions."
            if archived
            else "No sessions yet. Create one with `swarm submit FILE`."
        )
    else:
        narrow = console.width < WIDE_TABLE
        console.print(render.session_table(sessions, short_ids=narrow))
        if len(sessions) == limit:
            err.print(f"[dim]The newest {limit} shown; --limit N shows more.[/]")


def _show_session(client: ApiClient, sid: str, *, as_json: bool) -> None:
    """The session's fields and progress, and the tasks that need a look."""
    from swarm_cli.watch import derived_progress, session_progress

    body: dict[str, Any] = client.get(f"/v1/sessions/{sid}")
    progress = session_progress(client, body)
    if as_json:
        print_json({**body, "progress": progress} if progress is not None else body)
        return
    console.print(render.session_panel(body, progress or derived_progress(body)))
    counts = body.get("counts") or {}
    if not any(counts.get(s) for s in _TROUBLED):
        return
    troubled = [t for t in client.get(f"/v1/sessions/{sid}/tasks") if t["status"] in _TROUBLED]
    for t in troubled[:TROUBLED_SHOWN]:
        reason = f": {escape(t['reason'])}" if t.get("reason") else ""
        console.print(f"  {render.state(t['status'])} {escape(t['key'])}{reason}")
    if len(troubled) > TROUBLED_SHOWN:
        console.print(f"  … and {len(troubled) - TROUBLED_SHOWN} more")
    console.print(f"[dim]Details: swarm task {sid[:8]}/KEY; all tasks: swarm tasks {sid[:8]}[/]")


_TROUBLED = ("failed", "awaiting_approval")
TROUBLED_SHOWN = 20


def tasks(
    session: SessionArg,
    state: Annotated[str | None, typer.Option("--status", help="Only tasks in this state.")] = None,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The tasks of a session: state, agent, attempt, dependencies, time, commit, reason."""
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        data = client.get(f"/v1/sessions/{sid}/tasks", status=state)
    if as_json:
        print_json(data)
    else:
        console.print(render.task_table(data))


def watch(
    session: SessionArg,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print every event of the session as one JSON line (NDJSON)."),
    ] = False,
) -> None:
    """Follow a session live until it is over: a progress bar with elapsed time and ETA,
    counts by state, the running tasks with their worker and latest activity, and the
    recent events. Without a terminal, one line per event and a summary at the end.
    Ctrl-C stops watching (the session goes on)."""
    from swarm_cli.watch import watch as follow_session

    if as_json:
        mode = "json"
    elif console.is_terminal and not console.is_dumb_terminal:
        mode = "live"
    else:
        mode = "lines"
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        try:
            follow_session(client, sid, console, mode=mode)  # type: ignore[arg-type]
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _control(session: str, action: str, api_url: str | None, token: str | None) -> dict[str, Any]:
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        try:
            body: dict[str, Any] = client.post(f"/v1/sessions/{sid}/{action}")
        except CliError as exc:
            if exc.status in (404, 405) and exc.code in ("not_found", "method_not_allowed"):
                raise CliError(
                    f"this server cannot {action} sessions (an older version)", code=exc.code
                ) from None
            raise
    return body


def pause(
    session: SessionArg, api_url: ApiUrl = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Pause a session: no new task of it starts; running ones finish."""
    body = _control(session, "pause", api_url, token)
    _print_session_state(body, as_json)


def resume(
    session: SessionArg, api_url: ApiUrl = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Resume a paused (or suspended) session. (The whole system after `swarm drain` or
    `swarm stop`: `swarm system resume`.)"""
    body = _control(session, "resume", api_url, token)
    _print_session_state(body, as_json)


def _print_session_state(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(body)
        return
    label = render.session_label(body)
    console.print(
        f"Session {escape(str(body.get('title', '')))} ({body['id']}): {render.state(label)}",
        highlight=False,
    )
