"""Client commands `swarm blackboard` and `swarm proposals`: a session's blackboard of facts
(read it, write or clear a fact, a key's history) and the follow-up tasks its handoffs
proposed (list them, accept or refuse one)."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from swarm_cli import refs
from swarm_cli.client import CliError
from swarm_cli.options import ApiUrl, AsJson, Token, connect, console, err, print_json

__all__ = ["blackboard", "proposals"]

_BOARD_ACTIONS = ("set", "clear", "history")
_PROPOSAL_ACTIONS = ("accept", "refuse")


def _value(text: str) -> Any:
    """A fact's value from the command line: JSON when it reads as JSON (`42`, `true`,
    `{"a": 1}`, `"quoted"`), else the text as it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:199] + "…"


def blackboard(
    session: Annotated[str, typer.Argument(help="A session id or its first characters.")],
    action: Annotated[
        str | None, typer.Argument(help="set KEY VALUE, clear KEY or history KEY.")
    ] = None,
    key: Annotated[str | None, typer.Argument(help="The fact's key.")] = None,
    value: Annotated[
        str | None, typer.Argument(help="The value: JSON if it parses as JSON, else text.")
    ] = None,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A session's blackboard: facts that every task queued later reads (later values win).

    `swarm blackboard 3f2a` lists each key's latest value; `swarm blackboard 3f2a set
    db.engine postgres` writes one; `clear KEY` clears it; `history KEY` shows every value
    it had."""
    if action is not None and action not in _BOARD_ACTIONS:
        raise CliError(f"unknown action {action!r}: use set, clear or history")
    if action is not None and key is None:
        raise CliError(f"{action} needs a KEY")
    if action == "set" and value is None:
        raise CliError("set needs a KEY and a VALUE")
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        path = f"/v1/sessions/{sid}/blackboard"
        if action == "history":
            facts = client.get(f"{path}/{quote(str(key), safe='')}")
        elif action in ("set", "clear"):
            written = None if action == "clear" else _value(str(value))
            facts = client.post(path, {"key": key, "value": written})
        else:
            facts = client.get(path)["facts"]
    if as_json:
        print_json(facts)
        return
    if action in ("set", "clear"):
        err.print(f"{'Cleared' if action == 'clear' else 'Wrote'} {escape(str(key))}.")
        return
    table = Table(title=f"History of {key}" if action == "history" else "Blackboard")
    for column in ("key", "value", "author", "written"):
        table.add_column(column)
    for fact in facts:
        table.add_row(fact["key"], _shown(fact["value"]), fact["author"], fact["created_at"][:19])
    console.print(table)


def proposals(
    session: Annotated[str, typer.Argument(help="A session id or its first characters.")],
    action: Annotated[str | None, typer.Argument(help="accept ID or refuse ID.")] = None,
    proposal: Annotated[int | None, typer.Argument(help="The proposal's id.")] = None,
    reason: Annotated[str, typer.Option(help="Why it is refused.")] = "",
    status: Annotated[
        str | None, typer.Option(help="Only proposals in this state: proposed, accepted, refused.")
    ] = None,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Follow-up tasks the session's handoffs proposed: list them; accept one (it becomes a
    task) or refuse it (`settings.delegation: approve` waits for this)."""
    if action is not None and action not in _PROPOSAL_ACTIONS:
        raise CliError(f"unknown action {action!r}: use accept or refuse")
    if action is not None and proposal is None:
        raise CliError(f"{action} needs a proposal ID")
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session)
        path = f"/v1/sessions/{sid}/proposals"
        if action == "accept":
            found: Any = client.post(f"{path}/{proposal}/accept")
        elif action == "refuse":
            found = client.post(f"{path}/{proposal}/refuse", {"reason": reason})
        else:
            found = client.get(path, status=status)
    if as_json:
        print_json(found)
        return
    if action is not None:
        verb = "Accepted" if action == "accept" else "Refused"
        err.print(f"{verb} proposal {proposal} ({escape(found['key'])}).")
        return
    table = Table(title="Proposals")
    for column in ("id", "key", "title", "by", "depth", "status", "reason"):
        table.add_column(column)
    keys: dict[str, str] = {}
    for row in found:
        keys.setdefault(row["task_id"], row["spec"]["depends_on"][0])
        table.add_row(
            str(row["id"]),
            row["key"],
            row["spec"]["title"],
            keys[row["task_id"]],
            str(row["depth"]),
            row["status"],
            row["reason"] or "",
        )
    console.print(table)
