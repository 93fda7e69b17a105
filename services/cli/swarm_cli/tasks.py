"""Client commands about one task: `task` (details, attempts, gates, reviewers' verdicts,
comments, changes), `logs` (its timeline and transcript, followed live with `-f`), and
control: `retry`, `cancel`, `approve`, `comment` (with `--request-changes`, sends it
back)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.syntax import Syntax
from rich.text import Text

from swarm_cli import refs, render
from swarm_cli.client import ApiClient, CliError
from swarm_cli.options import (
    ApiUrl,
    AsJson,
    Token,
    Yes,
    confirm,
    connect,
    console,
    print_json,
    print_json_line,
    warn,
)
from swarm_cli.stream import follow_events

__all__ = ["approve", "cancel", "comment", "logs", "retry", "task"]

TaskArg = Annotated[
    str,
    typer.Argument(
        metavar="TASK",
        help="A task id, or SESSION/KEY (SESSION may be the id's first characters).",
        show_default=False,
    ),
]
_FAILING_GATES = frozenset({"failed", "timeout"})
PAGE = 1000


def task(
    ref: TaskArg,
    diff: Annotated[bool, typer.Option("--diff", help="Print the patch too.")] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """One task: its fields, attempts (worker, duration, exit code, reason, tokens, cost),
    the gates of its newest attempt, and the files it changed."""
    with connect(api_url, token) as client:
        tid = refs.task_id(client, ref)
        detail: dict[str, Any] = client.get(f"/v1/tasks/{tid}")
        changes = _diff(client, tid)
        title = None
        if not as_json:
            title = client.get(f"/v1/sessions/{detail['session_id']}").get("title")
    if as_json:
        if changes is not None and not diff:
            changes = {k: v for k, v in changes.items() if k != "patch"}
        print_json({**detail, "diff": changes})
        return
    console.print(render.task_panel(detail, session_title=title))
    attempts = detail.get("attempts") or []
    if attempts:
        console.print(render.attempts_table(attempts))
    gated = [a for a in attempts if a.get("gates")]
    if gated:
        console.print(render.gates_table(gated[-1]["gates"], attempt=gated[-1]["number"]))
    if detail.get("reviews"):
        console.print(render.reviews_table(detail["reviews"]))
    if detail.get("comments"):
        console.print(render.comments_table(detail["comments"]))
    if changes is None:
        console.print("[dim]No committed changes yet.[/]")
        return
    console.print(render.diff_table(changes))
    if diff:
        _print_patch(changes)


def _diff(client: ApiClient, tid: str) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = client.get(f"/v1/tasks/{tid}/diff")
    except CliError as exc:
        if exc.code != "no_diff":
            warn(f"the changes cannot be shown: {exc}")
        return None
    return body


def _print_patch(changes: dict[str, Any]) -> None:
    patch = str(changes.get("patch") or "")
    if console.is_terminal:
        console.print(Syntax(patch, "diff", theme="ansi_dark", background_color="default"))
    else:
        sys.stdout.write(patch if patch.endswith("\n") or not patch else patch + "\n")
        sys.stdout.flush()
    if changes.get("truncated"):
        warn("the patch was cut short; see the task's branch for all of it")


class _LogPrinter:
    """Prints a task's events; at the end of each attempt, its output and failed gates."""

    def __init__(self, client: ApiClient, tid: str, *, as_json: bool) -> None:
        self._client = client
        self._tid = tid
        self._json = as_json
        self._detail: dict[str, Any] | None = None

    def show(self, event: dict[str, Any]) -> None:
        if self._json:
            print_json_line(event)
            return
        for line in render.event_lines(event):
            console.print(line, highlight=False, soft_wrap=True)
        if event.get("type") in render.ATTEMPT_ENDS and event.get("attempt"):
            self._attempt_output(int(event["attempt"]))

    def _attempt(self, number: int) -> dict[str, Any] | None:
        for refresh in (False, True):
            if refresh or self._detail is None:
                self._detail = self._client.get(f"/v1/tasks/{self._tid}")
            for attempt in self._detail.get("attempts") or []:
                if attempt.get("number") == number and attempt.get("finished_at"):
                    return dict(attempt)
        return None

    def _attempt_output(self, number: int) -> None:
        attempt = self._attempt(number)
        if attempt is None:
            return
        _print_tail(f"output of attempt {number}", attempt.get("output_tail"))
        for gate in attempt.get("gates") or []:
            if gate.get("status") in _FAILING_GATES:
                title = (
                    f"gate {gate.get('name')} {gate.get('status')} (exit {gate.get('exit_code')})"
                )
                _print_tail(title, gate.get("output_tail"))


def _print_tail(title: str, text: object) -> None:
    lines = str(text or "").rstrip("\n").splitlines()
    if not lines:
        return
    console.print(f"            [dim]┌ {escape(title)}[/]", highlight=False)
    for line in lines:
        console.print(
            Text("            │ ", style="dim") + Text(line), highlight=False, soft_wrap=True
        )
    console.print("            [dim]└[/]", highlight=False)


def _ends(client: ApiClient, tid: str, event: dict[str, Any]) -> bool:
    """Whether `event` ended the task for good: it moved the task to an end state, the task
    is in that state now, of the same attempt, and nothing changed its state after it (a
    replayed end that a retry undid is not the end)."""
    target = render.event_state(event)
    if target not in render.ENDED_STATES:
        return False
    current = client.get(f"/v1/tasks/{tid}")
    if current["status"] != target:
        return False
    if event.get("attempt") and event["attempt"] != current.get("attempt"):
        return False
    later = client.get(f"/v1/tasks/{tid}/events", after=event["id"], limit=PAGE)
    return not any(render.event_state(e) is not None for e in later)


def logs(
    ref: TaskArg,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new events until the task ends."),
    ] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each event as one JSON line (NDJSON).")
    ] = False,
) -> None:
    """A task's timeline: state changes, the agent's transcript (messages, tool calls, file
    changes), gate results, and each attempt's output when it ends. With -f, follow it live
    until the task has ended with no further attempt (Ctrl-C stops sooner)."""
    with connect(api_url, token) as client:
        tid = refs.task_id(client, ref)
        printer = _LogPrinter(client, tid, as_json=as_json)
        try:
            if follow:
                _follow(client, tid, printer)
            else:
                _history(client, tid, printer)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _history(client: ApiClient, tid: str, printer: _LogPrinter) -> None:
    after = 0
    while True:
        page = client.get(f"/v1/tasks/{tid}/events", after=after, limit=PAGE)
        for event in page:
            printer.show(event)
            after = event["id"]  # pages come in stream order: the last one seen counts
        if len(page) < PAGE:
            return


def _follow(client: ApiClient, tid: str, printer: _LogPrinter) -> None:
    """The task's history, then its events as they come, until one ends the task."""
    for event in follow_events(client, f"/v1/tasks/{tid}/events", on_reconnect=warn):
        if event is None:
            continue
        printer.show(event)
        if _ends(client, tid, event):
            return


def _print_task_state(before: dict[str, Any], after: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(after)
        return
    was = f" (was {before['status']})" if before.get("status") != after.get("status") else ""
    console.print(
        f"Task {escape(str(after['key']))}: {render.state(str(after['status']))}{was}",
        highlight=False,
    )


def _task_action(
    ref: str,
    action: str,
    *,
    api_url: str | None,
    token: str | None,
    as_json: bool,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """POST `action` to a task and print the state it moved to; `check` may refuse (or
    ask first) on the task as it was."""
    with connect(api_url, token) as client:
        tid = refs.task_id(client, ref)
        before = client.get(f"/v1/tasks/{tid}")
        if check is not None:
            check(before)
        after = client.post(f"/v1/tasks/{tid}/{action}")
    _print_task_state(before, after, as_json)


def retry(
    ref: Annotated[
        str | None,
        typer.Argument(
            metavar="[TASK]",
            help="A task id, or SESSION/KEY (SESSION may be the id's first characters).",
            show_default=False,
        ),
    ] = None,
    failed: Annotated[
        str | None,
        typer.Option(
            "--failed", metavar="SESSION", help="Retry every failed task of this session."
        ),
    ] = None,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Run a failed or cancelled task again, as a new attempt; the tasks it blocked wait
    for it again. `--failed SESSION` retries every failed task of a session at once."""
    if (ref is None) == (failed is None):
        raise CliError("name one task, or a session with --failed")
    if ref is not None:
        _task_action(ref, "retry", api_url=api_url, token=token, as_json=as_json)
        return
    assert failed is not None
    with connect(api_url, token) as client:
        sid = refs.session_id(client, failed)
        failing = client.get(f"/v1/sessions/{sid}/tasks", status="failed")
        retried = [client.post(f"/v1/tasks/{t['id']}/retry") for t in failing]
    if as_json:
        print_json(retried)
        return
    keys = ", ".join(escape(str(t["key"])) for t in retried) or "none was failed"
    console.print(f"Retried {len(retried)} task(s) of {sid}: {keys}", highlight=False)


def comment(
    ref: TaskArg,
    body: Annotated[str, typer.Argument(metavar="TEXT", help="What you have to say.")],
    request_changes: Annotated[
        bool,
        typer.Option(
            "--request-changes",
            help="Send the task back with TEXT as feedback: its next attempt starts from its "
            "own last commit (a task awaiting approval, reviewing, failed, or not yet merged).",
        ),
    ] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Comment on a task; with --request-changes, send it back to work on your comment."""
    with connect(api_url, token) as client:
        tid = refs.task_id(client, ref)
        answer: dict[str, Any] = client.post(
            f"/v1/tasks/{tid}/comments", {"body": body, "request_changes": request_changes}
        )
    if as_json:
        print_json(answer)
        return
    task = answer["task"]
    what = "Sent back" if request_changes else "Commented on"
    console.print(
        f"{what} {escape(str(task['key']))}: now {render.state(str(task['status']))}",
        highlight=False,
    )


def approve(
    ref: TaskArg, api_url: ApiUrl = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Approve a task that awaits a person's approval, so it goes on."""
    _task_action(ref, "approve", api_url=api_url, token=token, as_json=as_json)


def cancel(
    ref: Annotated[
        str | None,
        typer.Argument(
            metavar="TASK",
            help="A task id or SESSION/KEY. Leave out with --session.",
            show_default=False,
        ),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option("--session", help="Cancel this whole session: every task that has not ended."),
    ] = None,
    yes: Yes = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a task (its running attempt is stopped), or with --session a whole session.
    Asks first unless --yes."""
    if (ref is None) == (session is None):
        raise CliError("give a TASK, or --session SESSION (one of them)", code="bad_arguments")
    if session is not None:
        with connect(api_url, token) as client:
            _cancel_session(client, session, yes=yes, as_json=as_json)
        return
    assert ref is not None
    _task_action(
        ref,
        "cancel",
        api_url=api_url,
        token=token,
        as_json=as_json,
        check=lambda before: _ask_to_cancel(before, yes=yes),
    )


def _ask_to_cancel(before: dict[str, Any], *, yes: bool) -> None:
    """Refuse a task that has already ended; ask before cancelling one that has not."""
    if before["status"] in render.ENDED_STATES:
        raise CliError(
            f"task {before['key']} has already ended ({before['status']})",
            code="task_not_cancellable",
        )
    confirm(
        f"Cancel task {before['key']!r} ({before['status']}, attempt {before['attempt']})?",
        yes=yes,
    )


def _cancel_session(client: ApiClient, session: str, *, yes: bool, as_json: bool) -> None:
    sid = refs.session_id(client, session)
    current = client.get(f"/v1/sessions/{sid}")
    counts = current.get("counts") or {}
    open_tasks = sum(n for s, n in counts.items() if s not in render.ENDED_STATES)
    confirm(
        f"Cancel session {current['title']!r} ({sid}) and its {open_tasks} open task(s)?",
        yes=yes,
    )
    body = client.post(f"/v1/sessions/{sid}/cancel")
    if as_json:
        print_json(body)
    else:
        console.print(
            f"Session {escape(str(body['title']))}: {render.state(str(body['status']))}  "
            f"{render.counts_line(body.get('counts') or {})}",
            highlight=False,
        )
