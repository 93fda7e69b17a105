"""Client commands `swarm usage` (tokens and cost of ended attempts, grouped by session,
task, agent kind, persona, tenant or day) and `swarm prices` (the price table they are
priced by)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from swarm_cli import refs
from swarm_cli.options import ApiUrl, AsJson, Token, connect, console, err, print_json
from swarm_cli.render.usage import prices_table, usage_table

__all__ = ["prices", "usage"]


def usage(
    by: Annotated[
        str,
        typer.Option(
            "--by", metavar="GROUP", help="session, task, agent, persona, tenant or day (UTC)."
        ),
    ] = "session",
    session: Annotated[
        str | None,
        typer.Option(help="Only this session (an id, or the start of one)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Attempts that ended at or after this (ISO time, UTC).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Attempts that ended before this (ISO time, UTC).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many rows.")] = 1000,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Tokens and cost of the ended attempts you may see, summed per group, with the total.

    The cost is Swarm's own, priced by `swarm prices` when each attempt ended (shell costs
    nothing); `CLI said` is what the agent CLIs claimed, where they claim anything."""
    with connect(api_url, token) as client:
        sid = refs.session_id(client, session) if session else None
        body: dict[str, Any] = client.get(
            "/v1/usage", group_by=by, session_id=sid, since=since, until=until, limit=limit
        )
    if as_json:
        print_json(body)
        return
    console.print(usage_table(body))
    more = f"; more with --limit {limit * 10}" if len(body["rows"]) == limit < 10_000 else ""
    err.print(f"{len(body['rows'])} row(s){more}", highlight=False, markup=False)


def prices(api_url: ApiUrl = None, token: Token = None, as_json: AsJson = False) -> None:
    """The price table every attempt is priced by: the built-in one, dated, with the
    server's SWARM_PRICES on top (marked)."""
    with connect(api_url, token) as client:
        body: dict[str, Any] = client.get("/v1/prices")
    if as_json:
        print_json(body)
        return
    console.print(prices_table(body))
    defaults = ", ".join(f"{k} → {v}" for k, v in sorted(body.get("defaults", {}).items()))
    err.print(
        f"An unknown model is priced as its kind's: {defaults}", highlight=False, markup=False
    )
