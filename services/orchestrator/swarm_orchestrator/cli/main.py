"""The `swarm` command line (Typer): services and a client of the REST API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from swarm_orchestrator.cli.client import ApiClient, CliError

__all__ = ["app", "main"]

app = typer.Typer(
    name="swarm",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Swarm runs many AI coding agents on one codebase at once.",
)
console = Console()
err = Console(stderr=True)

ApiUrl = Annotated[
    str, typer.Option("--api-url", envvar="SWARM_API_URL", help="Where Swarm's API answers.")
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="SWARM_API_TOKEN", show_default=False, help="Bearer token."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]
DEFAULT_URL = "http://127.0.0.1:8000"


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


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
    from swarm_orchestrator.up import UpOptions, parse_adapters, run_up

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
    from swarm_orchestrator.server import run_server
    from swarm_orchestrator.settings import OrchestratorSettings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    run_server(OrchestratorSettings(**overrides))  # type: ignore[arg-type]


@app.command()
def adapter(
    agent: Annotated[
        str | None,
        typer.Option(help="Agent kind: shell, claude, codex or gemini [SWARM_AGENT: shell]."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Attempts run at once [SWARM_CONCURRENCY: 1]."),
    ] = None,
) -> None:
    """Run one adapter: consume task messages of one agent kind and run them."""
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
    raise typer.Exit(adapter_main(settings))


@app.command()
def migrate() -> None:
    """Bring the database (SWARM_DATABASE_URL) to the newest schema."""
    from swarm_orchestrator.migrate import upgrade
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
    its SHA-256 hash; a user whose variable is not set has no password (it cannot log in)."""
    import os

    from swarm_common import acl

    passwords = {user: os.environ.get(f"SWARM_REDIS_{user.upper()}_PASSWORD") for user in acl.USERS}
    hashes = {user: acl.password_hash(p) if p else None for user, p in passwords.items()}
    try:
        lines = acl.acl_lines(prefix, hashes)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for user, digest in hashes.items():
        if digest is None:
            err.print(f"note: SWARM_REDIS_{user.upper()}_PASSWORD is not set: {user} cannot log in")
    sys.stdout.write("\n".join(lines) + "\n")


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="A task graph file (YAML or JSON).")],
    api_url: ApiUrl = DEFAULT_URL,
    token: Token = None,
    wait: Annotated[bool, typer.Option(help="Follow the session until it is done.")] = False,
    as_json: AsJson = False,
) -> None:
    """Create a session from a task graph file and print its id."""
    from swarm_orchestrator.cli.taskfile import load_taskfile

    body = load_taskfile(file)
    with ApiClient(api_url, token) as client:
        session = client.post("/v1/sessions", body)
        if wait:
            from swarm_orchestrator.cli.watch import follow

            session = follow(client, session["id"], err)
    if as_json:
        _print_json(session)
    else:
        sys.stdout.write(session["id"] + "\n")


@app.command()
def status(
    session: Annotated[str | None, typer.Argument(help="A session id; all when left out.")] = None,
    api_url: ApiUrl = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Task counts by state, for one session or for all."""
    from swarm_orchestrator.cli.render import session_table, status_table

    with ApiClient(api_url, token) as client:
        data = client.get(f"/v1/sessions/{session}") if session else client.get("/v1/sessions")
    if as_json:
        _print_json(data)
    elif session:
        console.print(status_table(data))
    else:
        console.print(session_table(data))


@app.command()
def tasks(
    session: Annotated[str, typer.Argument(help="A session id.")],
    state: Annotated[str | None, typer.Option("--status", help="Only tasks in this state.")] = None,
    api_url: ApiUrl = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The tasks of a session."""
    from swarm_orchestrator.cli.render import task_table

    with ApiClient(api_url, token) as client:
        data = client.get(f"/v1/sessions/{session}/tasks", status=state)
    if as_json:
        _print_json(data)
    else:
        console.print(task_table(data))


token_app = typer.Typer(
    no_args_is_help=True, help="API tokens: create, list and revoke them (admin tokens only)."
)
app.add_typer(token_app, name="token")

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
    api_url: ApiUrl = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Create a token and print it (on stdout, alone): it is shown only this once."""
    body = {"name": name, "role": role, "tenant": tenant, "expires_in_days": expires_in_days}
    with ApiClient(api_url, token) as client:
        created = client.post("/v1/tokens", body)
    if as_json:
        _print_json(created)
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
    api_url: ApiUrl = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Tokens (never the tokens themselves)."""
    from swarm_orchestrator.cli.render import token_table

    with ApiClient(api_url, token) as client:
        data = client.get("/v1/tokens", revoked=str(revoked).lower())
    if as_json:
        _print_json(data)
    else:
        console.print(token_table(data))


@token_app.command("revoke")
def token_revoke(
    which: Annotated[str, typer.Argument(help="The token's id, or the name of an active one.")],
    api_url: ApiUrl = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Revoke a token: its next request is refused."""
    with ApiClient(api_url, token) as client:
        token_id = which
        if not _is_uuid(which):
            matches = [t["id"] for t in client.get("/v1/tokens") if t["name"] == which]
            if len(matches) != 1:
                raise CliError(f"no single active token is named {which!r}", code="not_found")
            token_id = matches[0]
        revoked = client.delete(f"/v1/tokens/{token_id}")
    if as_json:
        _print_json(revoked)
    else:
        err.print(f"Revoked token {escape(revoked['name'])} ({revoked['id']}).")


def _is_uuid(text: str) -> bool:
    import uuid

    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def main() -> None:
    try:
        app()
    except CliError as exc:
        err.print(f"[bold red]swarm:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
