"""Client commands that end a session's life: `finish` (settle a session whose tasks have
all ended, after its final checkpoint) and `archive` (leave it out of the lists)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from swarm_cli import refs, render
from swarm_cli.checkpoints import OPEN, wait_for_checkpoint
from swarm_cli.client import ApiClient
from swarm_cli.options import ApiUrl, AsJson, Token, connect, console, print_json
from swarm_cli.sessions import SessionArg

__all__ = ["archive", "finish"]


def finish(
    session: SessionArg,
    wait: Annotated[
        bool, typer.Option(help="Wait for the final checkpoint and say how it ended.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait, give up after this many seconds.", min=1)
    ] = 3600,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Finish a session whose tasks have all ended, failed ones too: it is finalized, after a
    final checkpoint of its integration branch when it takes them (a final checkpoint that
    failed already is accepted). Exits 1 when it waits for review after --wait."""
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        body: dict[str, Any] = client.post(f"/v1/sessions/{sid}/finish")
        final = None if body["status"] == "finalized" else _final_checkpoint(client, sid)
        if wait and final is not None:
            final = wait_for_checkpoint(
                client, sid, int(final["number"]), timeout, what="final checkpoint"
            )
            body = client.get(f"/v1/sessions/{sid}")
    if as_json:
        print_json({**body, "final_checkpoint": final})
    else:
        _print_finished(body, final)
    if wait and body["status"] != "finalized":
        raise typer.Exit(1)


def _final_checkpoint(client: ApiClient, sid: str) -> dict[str, Any] | None:
    """The session's newest final checkpoint (the one its finish waits for)."""
    rows: list[dict[str, Any]] = client.get(f"/v1/sessions/{sid}/checkpoints")
    finals = [r for r in rows if r.get("final")]
    return finals[-1] if finals else None


def _print_finished(body: dict[str, Any], final: dict[str, Any] | None) -> None:
    line = f"Session {escape(str(body.get('title', '')))} ({body['id']}): "
    line += render.state(str(body["status"]))
    if body["status"] != "finalized" and final is not None and final["status"] in OPEN:
        line += (
            f"; final checkpoint {final['number']} of {str(final['commit'])[:12]} is "
            f"{final['status']}: it is finalized when that passes (--wait follows it)"
        )
    console.print(line, highlight=False)
    if body["status"] == "awaiting_review" and body.get("review_reason"):
        console.print(f"  {escape(str(body['review_reason']))}", highlight=False)


def archive(
    session: SessionArg,
    undo: Annotated[bool, typer.Option("--undo", help="List the session again.")] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Archive a session: `swarm status` and the dashboard leave it out (`swarm status
    --archived` lists the archived ones); it is kept in full and still shown by its id."""
    action = "unarchive" if undo else "archive"
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        body: dict[str, Any] = client.post(f"/v1/sessions/{sid}/{action}")
    if as_json:
        print_json(body)
        return
    what = "archived" if body.get("archived_at") else "listed again (not archived)"
    console.print(f"Session {escape(str(body.get('title', '')))} ({sid}): {what}", highlight=False)
