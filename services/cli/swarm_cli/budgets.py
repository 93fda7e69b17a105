"""`swarm budget`: show or change a session's budget (`/v1/sessions/{id}/budget`) or a
tenant's (`--tenant`, `/v1/tenants/{tenant}/budget`). Options change only what they name:
the rest of the budget stays as it was; `0` removes a limit."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from swarm_cli import refs
from swarm_cli.client import ApiClient, CliError
from swarm_cli.options import ApiUrl, AsJson, Token, connect, console, print_json

__all__ = ["budget"]


class OnExhausted(StrEnum):
    STOP = "stop"
    FINISH = "finish"


_LIMITS = "Limits (0 removes one)"


def budget(
    session: Annotated[
        str | None,
        typer.Argument(
            metavar="SESSION",
            help="A session id, or its first characters (not with --tenant).",
            show_default=False,
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="A tenant's budget instead (setting it takes an admin token)."),
    ] = None,
    usd: Annotated[
        float | None,
        typer.Option(help="Most US dollars to spend.", min=0, rich_help_panel=_LIMITS),
    ] = None,
    tokens: Annotated[
        int | None,
        typer.Option(help="Most tokens (input + output).", min=0, rich_help_panel=_LIMITS),
    ] = None,
    per_task_usd: Annotated[
        float | None,
        typer.Option(
            help="Most one attempt of a task may spend (sessions only).",
            min=0,
            rich_help_panel=_LIMITS,
        ),
    ] = None,
    on_exhausted: Annotated[
        OnExhausted | None,
        typer.Option(
            help="When spent: stop the running agents at once, or let them finish (sessions only).",
            case_sensitive=False,
        ),
    ] = None,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Show a session's budget and what it spent, or change it: raising a spent budget
    resumes the session. With --tenant, a tenant's budget over all its sessions."""
    if (session is None) == (tenant is None):
        raise CliError("name a SESSION or a --tenant (one of them)", code="usage")
    if tenant is not None and (per_task_usd is not None or on_exhausted is not None):
        raise CliError("--per-task-usd and --on-exhausted are a session's", code="usage")
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "usd": usd,
            "tokens": tokens,
            "per_task_usd": per_task_usd,
            "on_exhausted": on_exhausted.value if on_exhausted else None,
        }.items()
        if v is not None
    }
    with connect(api_url, token) as client:
        path = _path(client, session, tenant)
        body: dict[str, Any] = client.get(path)
        if changes:
            body = client.request("PUT", path, json=_merged(body, changes, tenant is not None))
    if as_json:
        print_json(body)
    elif tenant is not None:
        _print_tenant(body)
    else:
        _print_session(body)


def _path(client: ApiClient, session: str | None, tenant: str | None) -> str:
    if tenant is not None:
        return f"/v1/tenants/{tenant}/budget"
    assert session is not None
    return f"/v1/sessions/{refs.session_id(client, session)}/budget"


def _merged(current: dict[str, Any], changes: dict[str, Any], tenant: bool) -> dict[str, Any]:
    """The budget as it is with `changes` over it; a limit of 0 is none."""
    if tenant:
        base = {"usd": current.get("usd"), "tokens": current.get("tokens")}
    else:
        base = dict(current.get("budget") or {})
    merged = {**base, **changes}
    for key in ("usd", "tokens", "per_task_usd"):
        if merged.get(key) == 0:
            merged[key] = None
    return {k: v for k, v in merged.items() if v is not None}


def _money(value: Any) -> str:
    return "—" if value is None else f"${float(value):,.4f}"


def _count(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def _print_session(body: dict[str, Any]) -> None:
    limits = body.get("budget") or {}
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("", "limit", "spent", "remaining"):
        table.add_column(column)
    spent, left = body["spent"], body["remaining"]
    table.add_row("usd", _money(limits.get("usd")), _money(spent["usd"]), _money(left["usd"]))
    table.add_row(
        "tokens", _count(limits.get("tokens")), _count(spent["tokens"]), _count(left["tokens"])
    )
    console.print(f"Session {body['session_id']}", highlight=False)
    console.print(table)
    console.print(
        f"per task: {_money(limits.get('per_task_usd'))}   "
        f"when spent: {limits.get('on_exhausted', 'finish')}",
        highlight=False,
    )
    if body.get("warned"):
        console.print(f"warned at 80%: {escape(', '.join(body['warned']))}", highlight=False)
    if body.get("tenant"):
        _print_tenant(body["tenant"])
    if body.get("exhausted"):
        console.print(
            "[red]spent[/]: nothing new starts; raise the budget to resume", highlight=False
        )


def _print_tenant(body: dict[str, Any]) -> None:
    spent, left = body["spent"], body["remaining"]
    console.print(
        f"Tenant {escape(str(body['tenant']))}: "
        f"usd {_money(spent['usd'])} of {_money(body.get('usd'))} "
        f"({_money(left['usd'])} left), "
        f"tokens {_count(spent['tokens'])} of {_count(body.get('tokens'))} "
        f"({_count(left['tokens'])} left)" + ("  [red]spent[/]" if body.get("exhausted") else ""),
        highlight=False,
    )
