"""The `swarm` command line (Typer): services and a client of the REST API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from swarm_cli import (
    blackboard,
    budgets,
    checkpoints,
    config,
    dry_runs,
    finishing,
    personas,
    plans,
    refs,
    sessions,
    system,
    tasks,
    usage,
    webhooks,
)
from swarm_cli.client import ApiClient, CliError
from swarm_cli.inventory import inventory
from swarm_cli.options import (
    ApiUrl,
    AsJson,
    Token,
    connect,
    console,
    err,
    print_json,
    warn,
)
from swarm_common.concealed import conceal

__all__ = ["app", "main"]

app = typer.Typer(
    name="swarm",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Swarm runs many AI coding agents on one codebase at once.",
)
_SESSIONS = "Sessions"
_TASKS = "Tasks"
_SYSTEM = "Workers and system"


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="Where data, logs and the workspace live.")] = Path(
        ".swarm"
    ),
    adapters: Annotated[
        str | None,
        typer.Option(
            help="Adapters to run, as KIND=N[,KIND=N]. Default: shell=2, plus one per agent "
            "CLI (claude, codex, gemini) that is installed and has its API key."
        ),
    ] = None,
    demo: Annotated[bool, typer.Option(help="Submit a demo graph and follow it.")] = False,
) -> None:
    """Run everything on this machine: PostgreSQL and Valkey (embedded unless
    SWARM_DATABASE_URL / SWARM_REDIS_URL are set), migrations, the orchestrator and the
    adapters. Ctrl-C stops it all."""
    conceal()
    from swarm_cli.local.plan import parse_adapters
    from swarm_cli.local.up import UpOptions, run_up

    options = UpOptions(
        host=host,
        port=port,
        data_dir=data_dir,
        adapters=parse_adapters(adapters) if adapters is not None else None,
        demo=demo,
    )
    raise typer.Exit(run_up(options))


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="Listen address [SWARM_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [SWARM_PORT].")] = None,
) -> None:
    """Run the orchestrator: REST API, scheduler, outbox relay, event consumer."""
    conceal()
    from pydantic import ValidationError

    from swarm_orchestrator.server import run_server
    from swarm_orchestrator.settings import OrchestratorSettings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:
        settings = OrchestratorSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        raise CliError(f"invalid orchestrator setting {field}: {error['msg']}") from None
    run_server(settings)


@app.command()
def adapter(
    agent: Annotated[
        str | None,
        typer.Option(help="Agent kind: shell, claude, codex, gemini or noop [SWARM_AGENT: shell]."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=4096,
            help="Attempts run at once (at most 64; 4,096 for noop) [SWARM_CONCURRENCY: 1].",
        ),
    ] = None,
    check_health: Annotated[
        bool,
        typer.Option(
            "--check-health",
            help="Run no adapter: exit 0 when one could work now (Redis answers its user, its "
            "agent CLI is installed and has its key, the workspace is writable), else 1 with "
            "what is wrong. For a container's health check.",
        ),
    ] = False,
) -> None:
    """Run one adapter: consume task messages of one agent kind and run them."""
    if not check_health:  # a probe lives a second: nothing of it to conceal
        conceal()
    from pydantic import ValidationError

    from swarm_adapter.main import main as adapter_main
    from swarm_adapter.settings import get_settings

    overrides = {k: v for k, v in {"agent": agent, "concurrency": concurrency}.items() if v}
    try:
        settings = get_settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        raise CliError(f"invalid adapter setting {field}: {error['msg']}") from None
    if check_health:
        from swarm_adapter.probe import check_health as probe

        raise typer.Exit(probe(settings))
    raise typer.Exit(adapter_main(settings))


@app.command()
def migrate() -> None:
    """Bring the database (SWARM_DATABASE_URL) to the newest schema."""
    from swarm_orchestrator.db.migrate import upgrade
    from swarm_orchestrator.settings import get_settings

    url = get_settings().database_url
    if url is None:
        raise CliError("SWARM_DATABASE_URL is not set")
    upgrade(url.get_secret_value())
    err.print("database is at the newest schema")


@app.command("redis-acl")
def redis_acl(
    prefix: Annotated[
        str, typer.Option(envvar="SWARM_REDIS_PREFIX", help="Prefix of Swarm's Redis keys.")
    ] = "swarm",
) -> None:
    """Print ACL-file lines for a Redis of your own: the default user off, a user for the
    orchestrator and one for the adapters. Each password is read from
    SWARM_REDIS_ORCHESTRATOR_PASSWORD / SWARM_REDIS_ADAPTER_PASSWORD and printed only as
    its SHA-256 hash; a user whose variable is not set has no password (it cannot log in).
    With SWARM_REDIS_KEDA_PASSWORD set, a `keda` user too, for KEDA's autoscaler on
    Kubernetes (deploy/k8s)."""
    import os

    from swarm_common import acl

    passwords = {user: os.environ.get(f"SWARM_REDIS_{user.upper()}_PASSWORD") for user in acl.USERS}
    if os.environ.get("SWARM_REDIS_KEDA_PASSWORD"):
        passwords[acl.KEDA] = os.environ["SWARM_REDIS_KEDA_PASSWORD"]
    hashes = {user: acl.password_hash(p) if p else None for user, p in passwords.items()}
    try:
        lines = acl.acl_lines(prefix, hashes)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for user, digest in hashes.items():
        if digest is None:
            err.print(f"note: SWARM_REDIS_{user.upper()}_PASSWORD is not set: {user} cannot log in")
    sys.stdout.write("\n".join(lines) + "\n")


# --- client commands (see `swarm_cli.config` for --api-url and --token) ------

app.command(rich_help_panel=_SESSIONS)(sessions.submit)
app.command(rich_help_panel=_SESSIONS)(sessions.status)
app.command(rich_help_panel=_SESSIONS)(sessions.tasks)
app.command(rich_help_panel=_SESSIONS)(sessions.watch)
app.command(rich_help_panel=_SESSIONS)(sessions.pause)
app.command(rich_help_panel=_SESSIONS)(sessions.resume)
app.command(rich_help_panel=_SESSIONS)(sessions.add)
app.command(rich_help_panel=_SESSIONS)(sessions.export)
app.add_typer(plans.plan_app, name="plan", rich_help_panel=_SESSIONS)
app.command(rich_help_panel=_SESSIONS)(checkpoints.checkpoint)
app.command(rich_help_panel=_SESSIONS)(checkpoints.rollback)
app.command("dry-run", rich_help_panel=_SESSIONS)(dry_runs.dry_run)
app.command(rich_help_panel=_SESSIONS)(finishing.finish)
app.command(rich_help_panel=_SESSIONS)(finishing.archive)
app.command(rich_help_panel=_SESSIONS)(budgets.budget)
app.command(rich_help_panel=_TASKS)(tasks.task)
app.command(rich_help_panel=_TASKS)(tasks.logs)
app.command(rich_help_panel=_TASKS)(tasks.retry)
app.command(rich_help_panel=_TASKS)(tasks.cancel)
app.command(rich_help_panel=_TASKS)(tasks.comment)
app.command(rich_help_panel=_SESSIONS)(plans.approve)
app.command(rich_help_panel=_SYSTEM)(system.workers)
app.command(rich_help_panel=_SYSTEM)(system.system)
app.command(rich_help_panel=_SYSTEM)(system.drain)
app.command(rich_help_panel=_SYSTEM)(system.stop)
app.command(rich_help_panel=_SESSIONS)(inventory)
app.add_typer(personas.personas_app, name="personas", rich_help_panel=_SESSIONS)
app.command(rich_help_panel=_SESSIONS)(blackboard.blackboard)
app.command(rich_help_panel=_SESSIONS)(blackboard.proposals)
app.command(rich_help_panel=_SESSIONS)(usage.usage)
app.command(rich_help_panel=_SYSTEM)(usage.prices)
app.add_typer(webhooks.webhooks_app, name="webhooks", rich_help_panel=_SYSTEM)

config_app = typer.Typer(
    no_args_is_help=True,
    help="Where the client commands connect: --api-url, SWARM_API_URL, the config file "
    "(~/.config/swarm/config.toml, or SWARM_CONFIG) with api_url and token or token_file.",
)
app.add_typer(config_app, name="config", rich_help_panel=_SYSTEM)


@config_app.command("show")
def config_show(
    offline: Annotated[bool, typer.Option(help="Do not ask the server who the token is.")] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The API URL and where the token comes from (never the token), the config file, and,
    unless --offline, whom the server takes the token for."""
    resolved = config.resolve(api_url=api_url, token=token)
    for warning in resolved.warnings:
        warn(warning)
    who: dict[str, Any] | None = None
    problem = None
    if not offline:
        try:
            with ApiClient(resolved.api_url, resolved.token) as client:
                who = client.get("/v1/whoami")
        except CliError as exc:
            problem = str(exc)
    if as_json:
        print_json(
            {
                "api_url": resolved.api_url,
                "api_url_from": resolved.api_url_from,
                "token_set": resolved.token is not None,
                "token_from": resolved.token_from,
                "config_file": str(resolved.config_file),
                "config_found": resolved.config_found,
                "whoami": who,
                "error": problem,
            }
        )
        return
    found = "" if resolved.config_found else "  [dim](none there)[/]"
    source = escape(resolved.api_url_from)
    console.print(f"[bold]API URL[/]  {escape(resolved.api_url)}  [dim]from {source}[/]")
    if resolved.token is None:
        console.print("[bold]token[/]    [yellow]none[/]")
    else:
        console.print(f"[bold]token[/]    set  [dim]from {escape(resolved.token_from)}[/]")
    console.print(f"[bold]config[/]   {escape(str(resolved.config_file))}{found}")
    if who is not None:
        tenant = f", tenant {who['tenant']}" if who.get("tenant") else ""
        console.print(
            f"[bold]server[/]   you are {escape(who['name'])} ({who['role']}{escape(tenant)})"
        )
    elif problem is not None:
        console.print(f"[bold]server[/]   [red]{escape(problem)}[/]")


token_app = typer.Typer(
    no_args_is_help=True, help="API tokens: create, list and revoke them (admin tokens only)."
)
app.add_typer(token_app, name="token", rich_help_panel=_SYSTEM)

Role = Annotated[
    str,
    typer.Option(
        "--role",
        help="viewer: read; operator: also submit, retry, cancel, approve; admin: also "
        "tokens, drain, stop.",
    ),
]


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="Shown in audit entries.")],
    role: Role,
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's sessions are visible to the token.")
    ] = None,
    expires_in_days: Annotated[int | None, typer.Option(help="Expire after N days.")] = None,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Create a token and print it (on stdout, alone): it is shown only this once."""
    body = {"name": name, "role": role, "tenant": tenant, "expires_in_days": expires_in_days}
    with connect(api_url, token) as client:
        created = client.post("/v1/tokens", body)
    if as_json:
        print_json(created)
        return
    scope = f" of tenant {created['tenant']}" if created["tenant"] else ""
    err.print(
        f"Created {created['role']} token {escape(created['name'])}{escape(scope)} "
        f"(id {created['id']}). Keep it now: it is not shown again."
    )
    sys.stdout.write(created["token"] + "\n")


@token_app.command("list")
def token_list(
    revoked: Annotated[bool, typer.Option(help="Include revoked tokens.")] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Tokens (never the tokens themselves)."""
    from swarm_cli.render import token_table

    with connect(api_url, token) as client:
        data = client.get("/v1/tokens", revoked=str(revoked).lower())
    if as_json:
        print_json(data)
    else:
        console.print(token_table(data))


@token_app.command("revoke")
def token_revoke(
    which: Annotated[str, typer.Argument(help="The token's id, or the name of an active one.")],
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Revoke a token: its next request is refused."""
    with connect(api_url, token) as client:
        token_id = which
        if not refs.is_uuid(which):
            matches = [t["id"] for t in client.get("/v1/tokens") if t["name"] == which]
            if len(matches) != 1:
                raise CliError(f"no single active token is named {which!r}", code="not_found")
            token_id = matches[0]
        revoked = client.delete(f"/v1/tokens/{token_id}")
    if as_json:
        print_json(revoked)
    else:
        err.print(f"Revoked token {escape(revoked['name'])} ({revoked['id']}).")


def main() -> None:
    try:
        app()
    except CliError as exc:
        err.print(f"[bold red]swarm:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
