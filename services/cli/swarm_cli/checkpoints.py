"""Client commands about a session's integration branch: `checkpoint` (run the gates on it,
tag it) and `rollback` (reset it to a passed checkpoint)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from swarm_cli import refs, render
from swarm_cli.client import ApiClient, CliError
from swarm_cli.options import ApiUrl, AsJson, Token, connect, console, print_json
from swarm_cli.sessions import SessionArg

__all__ = ["OPEN", "checkpoint", "rollback", "wait_for_checkpoint"]

POLL_S = 0.5
OPEN = ("pending", "running")
"""States of a checkpoint that has not ended."""


def checkpoint(
    session: SessionArg,
    api_url: ApiUrl = None,
    token: Token = None,
    wait: Annotated[bool, typer.Option(help="Wait for the gates and say how it ended.")] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait, give up after this many seconds.", min=1)
    ] = 3600,
    as_json: AsJson = False,
) -> None:
    """Checkpoint a session's integration branch: its gates run on the head as it is now;
    when they pass the target branch moves there and the commit is tagged."""
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        made: dict[str, Any] = client.post(f"/v1/sessions/{sid}/checkpoints")
        if wait:
            made = wait_for_checkpoint(client, sid, int(made["number"]), timeout)
    if as_json:
        print_json(made)
        return
    _print_checkpoint(made)
    if wait and made["status"] == "failed":
        raise typer.Exit(1)


def wait_for_checkpoint(
    client: ApiClient, sid: str, number: int, timeout_s: float, *, what: str = "checkpoint"
) -> dict[str, Any]:
    """Checkpoint `number` once it has ended (`CliError` after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        current: dict[str, Any] = client.get(f"/v1/sessions/{sid}/checkpoints/{number}")
        if current["status"] not in OPEN:
            return current
        if time.monotonic() > deadline:
            raise CliError(f"{what} {number} is still {current['status']} after {timeout_s:g}s")
        time.sleep(POLL_S)


def _print_checkpoint(body: dict[str, Any]) -> None:
    line = f"Checkpoint {body['number']} of {body['commit'][:12]}: {render.state(body['status'])}"
    if body.get("status") == "passed":
        line += f", tagged {escape(str(body.get('tag')))}"
    if body.get("error"):
        line += f" ({escape(str(body['error'])[:300])})"
    console.print(line, highlight=False)


def rollback(
    session: SessionArg,
    number: Annotated[
        int | None,
        typer.Argument(metavar="[N]", help="A passed checkpoint; the newest when left out."),
    ] = None,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Reset a session's integration branch to a passed checkpoint; merged work after it is
    undone (its tasks show rolled_back) and tasks in flight restart from it."""
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        body = {"checkpoint": number} if number is not None else None
        rolled: dict[str, Any] = client.post(f"/v1/sessions/{sid}/rollback", body)
    if as_json:
        print_json(rolled)
        return
    undone = len(rolled.get("rolled_back") or [])
    console.print(
        f"Rolled back to checkpoint {rolled['checkpoint']}: the integration head is "
        f"{str(rolled['integration_head'])[:12]}; {undone} task merge(s) undone",
        highlight=False,
    )
