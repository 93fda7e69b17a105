"""What every client command shares: the connection options, the consoles, JSON output for
scripts, and asking before a destructive action."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from swarm_cli import config
from swarm_cli.client import ApiClient, CliError

__all__ = [
    "ApiUrl",
    "AsJson",
    "Token",
    "Yes",
    "confirm",
    "connect",
    "console",
    "err",
    "print_json",
    "print_json_line",
    "warn",
]

console = Console()
err = Console(stderr=True)

_CONNECTION = "Connection"
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        show_default=False,
        rich_help_panel=_CONNECTION,
        help="Where Swarm's API answers. Else SWARM_API_URL, the config file's api_url, "
        f"{config.DEFAULT_URL}.",
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        show_default=False,
        rich_help_panel=_CONNECTION,
        help="Bearer token. Else SWARM_API_TOKEN, the file SWARM_TOKEN_FILE names, the config "
        "file's token or token_file, .swarm/admin.token (for a local URL).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def warn(message: str) -> None:
    err.print(f"[yellow]swarm: warning:[/] {escape(message)}", highlight=False)


def connect(api_url: str | None, token: str | None) -> ApiClient:
    """A client of the API the flags, the environment and the config file name."""
    resolved = config.resolve(api_url=api_url, token=token)
    for warning in resolved.warnings:
        warn(warning)
    hint = (
        "no token was sent: pass --token, set SWARM_API_TOKEN, or set token_file in "
        f"{resolved.config_file}"
    )
    return ApiClient(resolved.api_url, resolved.token, token_hint=hint)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def print_json_line(value: Any) -> None:
    """One JSON document on one line (NDJSON), flushed at once for a reading pipe."""
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def confirm(question: str, *, yes: bool) -> None:
    """Go on only when `--yes` was given or the person at the terminal says yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(
            "this needs a confirmation and stdin is not a terminal: add --yes",
            code="confirmation_required",
        )
    if not typer.confirm(question, default=False, err=True):
        err.print("Nothing done.")
        raise typer.Exit(1)
