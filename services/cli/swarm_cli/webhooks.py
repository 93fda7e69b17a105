"""Client commands `swarm webhooks`: list the webhooks your token sees (the default), add
one (its secret is printed once, alone on stdout), show or remove one, list its deliveries
(status, attempts, last answer or error), send it a test delivery. A WEBHOOK is its id or
the start of one."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from swarm_cli import refs
from swarm_cli.client import ApiClient, CliError
from swarm_cli.options import ApiUrl, AsJson, Token, connect, console, err, print_json
from swarm_common.notifications import EVENTS

__all__ = ["webhooks_app"]


class Format(StrEnum):
    JSON = "json"
    SLACK = "slack"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class _WebhooksGroup(TyperGroup):
    """`swarm webhooks` and `swarm webhooks --session S` are `swarm webhooks list …`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in ("--help", "-h")):
            args = ["list", *args]
        result: list[str] = super().parse_args(ctx, args)
        return result


webhooks_app = typer.Typer(
    cls=_WebhooksGroup,
    help="Webhooks: signed POSTs when sessions finish or wait for review, tasks wait for "
    "approval or fail for good, checkpoints pass or fail, an agent kind is lost, budgets "
    "warn. `swarm webhooks` lists them; add, show, rm, deliveries, test.",
)

WebhookRef = Annotated[str, typer.Argument(metavar="WEBHOOK", help="A webhook id, or its start.")]


def webhook_id(client: ApiClient, ref: str) -> str:
    ref = ref.strip().lower()
    if refs.is_uuid(ref):
        return ref
    hooks: list[dict[str, Any]] = client.get("/v1/webhooks")
    found = [h for h in hooks if ref and str(h["id"]).startswith(ref)]
    if len(found) != 1:
        said = "no webhook id starts" if not found else f"{len(found)} webhook ids start"
        raise CliError(f"{said} with {ref!r}", code="webhook_not_found")
    return str(found[0]["id"])


@webhooks_app.command("list")
def list_webhooks(
    session: Annotated[
        str | None, typer.Option(help="Only the webhooks of this session (an id or its start).")
    ] = None,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The webhooks your token sees (a tenant's token: its tenant's), oldest first."""
    from swarm_cli.render.webhooks import webhook_table

    with connect(api_url, token) as client:
        sid = refs.session_id(client, session) if session else None
        hooks = client.get("/v1/webhooks", session_id=sid)
    if as_json:
        print_json(hooks)
    else:
        console.print(webhook_table(hooks))


@webhooks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where deliveries are POSTed (http or https).")],
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            "-e",
            help=f"An event to receive (again for more); default all: {', '.join(EVENTS)}.",
        ),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(help="Only this session's events (default: every session you see)."),
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format", help='json: the event; slack: {"text": ...}.', case_sensitive=False
        ),
    ] = Format.JSON,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Add a webhook; its signing secret is printed once, alone on stdout.

    Deliveries carry X-Swarm-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">,
    X-Swarm-Delivery (the same on a retry) and X-Swarm-Event."""
    unknown = sorted(set(event or ()) - set(EVENTS))
    if unknown:
        raise CliError(
            f"unknown event(s) {', '.join(unknown)}; known: {', '.join(EVENTS)}", code="usage"
        )
    body: dict[str, Any] = {"url": url, "format": fmt.value}
    if event:
        body["events"] = list(dict.fromkeys(event))
    with connect(api_url, token) as client:
        if session:
            body["session_id"] = refs.session_id(client, session)
        created = client.post("/v1/webhooks", body)
    if as_json:
        print_json(created)
        return
    err.print(
        f"Added webhook {created['id']} for {', '.join(created['events'])}. "
        "Keep its secret now: it is not shown again.",
        highlight=False,
        markup=False,
    )
    sys.stdout.write(created["secret"] + "\n")


@webhooks_app.command("show")
def show(
    webhook: WebhookRef, api_url: ApiUrl = None, token: Token = None, as_json: AsJson = False
) -> None:
    """One webhook (never its secret)."""
    with connect(api_url, token) as client:
        hook = client.get(f"/v1/webhooks/{webhook_id(client, webhook)}")
    if as_json:
        print_json(hook)
        return
    for label in ("id", "tenant", "session_id", "url", "events", "format", "created_by"):
        value = hook.get(label)
        shown = ", ".join(value) if isinstance(value, list) else str(value or "-")
        console.print(f"[bold]{label:<11}[/] {escape(shown)}", highlight=False)


@webhooks_app.command("rm")
def rm(
    webhook: WebhookRef, api_url: ApiUrl = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Remove a webhook and its deliveries (pending ones are not sent)."""
    with connect(api_url, token) as client:
        removed = client.delete(f"/v1/webhooks/{webhook_id(client, webhook)}")
    if as_json:
        print_json(removed)
    else:
        err.print(f"Removed webhook {removed['id']}.", highlight=False, markup=False)


@webhooks_app.command("deliveries")
def deliveries(
    webhook: WebhookRef,
    status: Annotated[
        DeliveryStatus | None, typer.Option(help="Only deliveries in this state.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A webhook's deliveries, newest first: status, attempts, the last answer or error."""
    from swarm_cli.render.webhooks import delivery_table

    with connect(api_url, token) as client:
        hook = webhook_id(client, webhook)
        found = client.get(
            f"/v1/webhooks/{hook}/deliveries",
            status=status.value if status else None,
            limit=limit,
        )
    if as_json:
        print_json(found)
    else:
        console.print(delivery_table(found))


@webhooks_app.command("test")
def test(
    webhook: WebhookRef, api_url: ApiUrl = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Send the webhook a `webhook.test` delivery (see it with `swarm webhooks deliveries`)."""
    with connect(api_url, token) as client:
        sent = client.post(f"/v1/webhooks/{webhook_id(client, webhook)}/test")
    if as_json:
        print_json(sent)
    else:
        err.print(f"Test delivery {sent['id']} queued.", highlight=False, markup=False)
