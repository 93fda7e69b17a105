"""Client command `inventory`: find the projects under some folders (git repositories and
folders with a build file) and show what each is made of. By default the server scans and
stores them (`POST /v1/inventory`, for the planner too); `--local` scans here, without a
server, and stores nothing; without `--roots` it shows what earlier scans stored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from swarm_cli.client import CliError
from swarm_cli.options import ApiUrl, AsJson, Token, connect, console, err, print_json
from swarm_cli.render.inventory import inventory_table

__all__ = ["inventory"]

MAX_DEPTH = 8
"""As the server allows (`swarm_orchestrator.planning.inventory.MAX_DEPTH`)."""


def inventory(
    roots: Annotated[
        list[Path] | None,
        typer.Option(
            "--roots",
            metavar="DIR",
            show_default=False,
            help="A folder to scan; repeat for more. Without it: what earlier scans stored.",
        ),
    ] = None,
    max_depth: Annotated[
        int,
        typer.Option(
            "--max-depth", min=0, max=MAX_DEPTH, help="Folders below each root to look in."
        ),
    ] = 3,
    local: Annotated[
        bool, typer.Option("--local", help="Scan in this process, without a server; store nothing.")
    ] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Find the projects under folders (git repositories, and folders with a build file
    outside git) and show each one's languages, build systems, files, size and commits of
    the last 30 days. `.gitignore`d files are skipped and symlinks are never followed."""
    folders = [str(Path(r).expanduser().absolute()) for r in roots or []]
    if local:
        if not folders:
            raise CliError("--local needs at least one --roots DIR", code="invalid_root")
        body = _scan_here(folders, max_depth)
    elif folders:
        with connect(api_url, token) as client:
            body = client.post("/v1/inventory", {"roots": folders, "max_depth": max_depth})
    else:
        with connect(api_url, token) as client:
            body = {"projects": client.get("/v1/inventory")}
    if as_json:
        print_json(body if folders else body["projects"])
        return
    projects: list[dict[str, Any]] = body["projects"]
    console.print(inventory_table(projects))
    if folders:
        err.print(
            f"{len(projects)} project(s) under {', '.join(body['roots'])} "
            f"(max depth {max_depth}{', not stored' if local else ''})",
            highlight=False,
            markup=False,
        )


def _scan_here(folders: list[str], max_depth: int) -> dict[str, Any]:
    """What the server would answer, from a scan in this process."""
    from swarm_common.inventory import InventoryError, scan

    try:
        found = scan(folders, max_depth=max_depth)
    except InventoryError as exc:
        raise CliError(str(exc), code=exc.code) from None
    return {
        "roots": [str(Path(f).resolve()) for f in folders],
        "max_depth": max_depth,
        "projects": [p.model_dump() for p in found],
    }
