"""Client commands from a goal to a running graph: `swarm plan "goal"` (and `plan show`,
`plan edit`, `plan continue`, `plan list`), `swarm approve`, and `swarm submit` of a single
prompt."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from swarm_cli import refs
from swarm_cli.client import ApiClient, CliError
from swarm_cli.options import ApiUrl, AsJson, Token, connect, console, err, print_json
from swarm_cli.sessions import SessionArg
from swarm_common.specs import PRIORITY_LEVELS

__all__ = ["PRIORITIES", "approve", "plan_app", "submit_prompt"]

POLL_S = 0.5
PRIORITIES = PRIORITY_LEVELS
"""Names `--priority` takes besides a number (higher runs first)."""
PLANNERS = ("heuristic", "claude", "codex", "gemini")


class _PlanGroup(TyperGroup):
    """`swarm plan GOAL …` is `swarm plan new GOAL …`: a first argument that names no
    subcommand starts a plan."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["new", *args]
        return super().resolve_command(ctx, args)


plan_app = typer.Typer(
    cls=_PlanGroup,
    no_args_is_help=True,
    help='From a goal to a plan: `swarm plan "goal" --repo .` plans it; show, edit, '
    "continue and list plans; `swarm approve SESSION` runs one.",
)


def _goal_text(goal: str) -> str:
    """The goal as given, the file it names, or stdin for `-`."""
    if goal == "-":
        return sys.stdin.read()
    path = Path(goal)
    if len(goal) < 4096 and "\n" not in goal and path.is_file():
        try:
            return path.read_text()
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror}") from None
    return goal


def _repo(repo: str) -> str:
    if "://" in repo or ("@" in repo.split("/")[0] and ":" in repo):
        return repo
    return str(Path(repo).expanduser().resolve())


def _title(text: str) -> str:
    first = next((line.strip(" #*-") for line in text.splitlines() if line.strip()), "")
    return (first or "plan")[:200]


@plan_app.command("new")
def new(
    goal: Annotated[
        str, typer.Argument(metavar="GOAL", help="The goal: text, a file, or - for stdin.")
    ],
    repo: Annotated[str, typer.Option(help="The repository: a path or a git URL.")] = ".",
    base: Annotated[str, typer.Option("--base", help="Branch or commit to start from.")] = "HEAD",
    agent: Annotated[
        str | None,
        typer.Option(
            help="Who plans: heuristic, claude, codex or gemini (the server's default when "
            "left out: the first agent with an adapter, else heuristic)."
        ),
    ] = None,
    auto_approve: Annotated[
        bool, typer.Option(help="Run the plan as soon as it is made, without review.")
    ] = False,
    title: Annotated[str | None, typer.Option(help="The session's title.")] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait for a planning agent's answer and show the plan.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="With --wait, give up after seconds.")] = 1800,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Plan a goal into a draft session (nothing runs until `swarm approve`)."""
    if agent is not None and agent not in PLANNERS:
        raise CliError(f"--agent must be one of {', '.join(PLANNERS)}")
    text = _goal_text(goal)
    body: dict[str, Any] = {
        "title": title or _title(text),
        "goal": text,
        "repo": _repo(repo),
        "base_ref": base,
        "plan": True,
        "auto_approve": auto_approve,
    }
    if agent is not None:
        body["settings"] = {"planner": {"agent": agent}}
    with connect(api_url, token) as client:
        session = client.post("/v1/sessions", body)
        plan = _settled(client, session["id"], timeout) if wait else _get(client, session["id"])
    _show(session["id"], plan, as_json)


@plan_app.command("show")
def show(
    session: SessionArg,
    revision: Annotated[int | None, typer.Option(help="An older revision.", min=1)] = None,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="The tasks as YAML.")] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A session's plan: its tasks, revisions and conversation."""
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        plan = client.get(f"/v1/sessions/{sid}/plan", revision=revision)
    if as_yaml:
        sys.stdout.write(_yaml(plan["tasks"]))
        return
    _show(sid, plan, as_json)


@plan_app.command("edit")
def edit(
    session: SessionArg,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Edit the plan as YAML in $EDITOR; saved, it is one new revision (refused when
    someone else made one meanwhile)."""
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        plan = client.get(f"/v1/sessions/{sid}/plan")
        before = _yaml(plan["tasks"])
        after = _edit_text(before)
        if after == before:
            err.print("No change.", highlight=False)
            return
        try:
            tasks = yaml.safe_load(after)
        except yaml.YAMLError as exc:
            raise CliError(f"the edited plan is not valid YAML: {exc}") from None
        if not isinstance(tasks, list):
            raise CliError("the edited plan must be a list of tasks")
        base = plan["latest_revision"] or 0
        changed = client.request(
            "PATCH", f"/v1/sessions/{sid}/plan", json={"base_revision": base, "tasks": tasks}
        )
    _show(sid, changed, as_json)


def _edit_text(text: str) -> str:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        file.write(text)
        path = Path(file.name)
    try:
        done = subprocess.run([*shlex.split(editor), str(path)], check=False)  # noqa: S603
        if done.returncode != 0:
            raise CliError(f"{editor} exited with {done.returncode}; the plan is unchanged")
        return path.read_text()
    finally:
        path.unlink(missing_ok=True)


@plan_app.command("continue")
def continue_(
    session: SessionArg,
    feedback: Annotated[str, typer.Argument(metavar="FEEDBACK", help="What to change, in words.")],
    wait: Annotated[bool, typer.Option(help="Wait for the revised plan.")] = True,
    timeout: Annotated[float, typer.Option(help="With --wait, give up after seconds.")] = 1800,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Tell the planner what to change: it revises the plan into a new revision."""
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        client.post(f"/v1/sessions/{sid}/plan/messages", {"text": _goal_text(feedback)})
        plan = _settled(client, sid, timeout) if wait else _get(client, sid)
    _show(sid, plan, as_json)


@plan_app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest drafts shown.")] = 20,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Draft sessions and their plans."""
    with connect(api_url, token) as client:
        drafts = client.get("/v1/sessions", status="draft", limit=limit)
    if as_json:
        print_json(drafts)
        return
    table = Table("session", "plan", "revision", "title", box=None, header_style="bold")
    for s in drafts:
        table.add_row(
            str(s["id"]), s.get("plan_status") or "-", str(s.get("plan_revision") or "-"),
            escape(s["title"]),
        )  # fmt: skip
    console.print(table)


def approve(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="SESSION|TASK",
            help="A draft session (its plan runs) or a task awaiting approval (SESSION/KEY or "
            "a task id).",
        ),
    ],
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Approve a draft session's plan (it starts to run), or a task that awaits a person's
    approval (it goes on)."""
    with connect(api_url, token) as client:
        sid = _session_or_none(client, ref)
        if sid is None:
            from swarm_cli.tasks import approve as approve_task

            client.close()
            approve_task(ref, api_url=api_url, token=token, as_json=as_json)
            return
        session = client.post(f"/v1/sessions/{sid}/approve")
    if as_json:
        print_json(session)
        return
    console.print(
        f"Approved the plan of {sid}: {session['total']} task(s), session {session['status']}",
        highlight=False,
    )


def _session_or_none(client: ApiClient, ref: str) -> str | None:
    """The session `ref` names, or None when it names a task."""
    if "/" in ref:
        return None
    if refs.is_uuid(ref):
        try:
            client.get(f"/v1/sessions/{ref}")
        except CliError as exc:
            if exc.code == "session_not_found":
                return None
            raise
        return ref
    return refs.session_id(client, ref)


def submit_prompt(
    prompt: str,
    *,
    agent: str,
    priority: str,
    repo: str,
    base: str,
    client: ApiClient,
) -> dict[str, Any]:
    """A session of one task: `prompt` for `agent`."""
    task = {"key": "task", "title": _title(prompt), "prompt": prompt, "agent": agent,
            "priority": parse_priority(priority)}  # fmt: skip
    body = {"title": _title(prompt), "goal": prompt, "repo": _repo(repo), "base_ref": base,
            "tasks": [task]}  # fmt: skip
    result: dict[str, Any] = client.post("/v1/sessions", body)
    return result


def parse_priority(value: str) -> int:
    if value.lower() in PRIORITIES:
        return PRIORITIES[value.lower()]
    try:
        return int(value)
    except ValueError:
        names = ", ".join(PRIORITIES)
        raise CliError(f"--priority must be a number or one of {names}") from None


# -- output --------------------------------------------------------------------------------


def _get(client: ApiClient, sid: str) -> dict[str, Any]:
    plan: dict[str, Any] = client.get(f"/v1/sessions/{sid}/plan")
    return plan


def _settled(client: ApiClient, sid: str, timeout_s: float) -> dict[str, Any]:
    """The plan once no planner is at work (a planning agent's answer can take minutes)."""
    deadline = time.monotonic() + timeout_s
    with err.status("Planning…") as status:
        while True:
            plan = _get(client, sid)
            if plan["status"] != "planning":
                return plan
            runs = plan.get("runs") or []
            if runs:
                run = runs[-1]
                status.update(
                    f"Planning with {run['agent']} ({run['status']}, try {run['attempt']})…"
                )
            if time.monotonic() > deadline:
                raise CliError(f"no plan after {timeout_s:.0f}s; see `swarm plan show {sid}`")
            time.sleep(POLL_S)


def _yaml(tasks: list[dict[str, Any]]) -> str:
    return yaml.safe_dump(tasks, sort_keys=False, allow_unicode=True, width=100)


def _show(sid: str, plan: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(plan)
        return
    status = plan["status"] or "none"
    console.print(
        f"Session {sid}: plan {status}, revision {plan['revision'] or '-'}"
        + (f" of {plan['latest_revision']}" if plan["latest_revision"] != plan["revision"] else ""),
        highlight=False,
    )
    if plan.get("error"):
        console.print(f"[red]Planning failed:[/red] {escape(plan['error'])}")
    if plan.get("summary"):
        console.print(escape(plan["summary"]), highlight=False)
    if plan["tasks"]:
        table = Table("key", "agent", "depends on", "phase", "title", box=None,
                      header_style="bold")  # fmt: skip
        for t in plan["tasks"]:
            deps = ", ".join(t.get("depends_on") or [])
            table.add_row(
                escape(t["key"]), t.get("agent", "shell"), escape(deps),
                escape(t.get("phase") or ""), escape(t.get("title") or ""),
            )  # fmt: skip
        console.print(table)
    if status == "ready":
        console.print(
            f"Next: swarm approve {sid}   (or swarm plan edit / swarm plan continue)",
            highlight=False,
        )
