"""Client commands `swarm personas`: the persona catalogue of the caller's tenant — list it
(the default), show one, add personas from a YAML or JSON file (a name already there is
replaced), generate a reproducible population from a seed on the server or, with
`--local`, here without a server (to check that a seed makes what it should), remove one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
import yaml
from rich.markup import escape
from typer.core import TyperGroup

from swarm_cli.client import CliError
from swarm_cli.options import ApiUrl, AsJson, Token, connect, console, err, print_json
from swarm_cli.render.personas import persona_panel, persona_table

__all__ = ["personas_app"]

MAX_COUNT = 100_000
"""As the library makes at most (`swarm_common.personas.MAX_COUNT`, imported only for
`--local`: the command line starts without pydantic)."""
MAX_SEED = 2**63 - 1
BATCH = 1000
"""Personas one `POST /v1/personas` stores (the server's most)."""


class _PersonasGroup(TyperGroup):
    """`swarm personas` and `swarm personas --role R` are `swarm personas list …`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in ("--help", "-h")):
            args = ["list", *args]
        result: list[str] = super().parse_args(ctx, args)
        return result


personas_app = typer.Typer(
    cls=_PersonasGroup,
    help="The persona catalogue: who logical agents are (role, skills, preferred agents, "
    "working style, commit identity). `swarm personas` lists it; add, generate, show, rm.",
)


@personas_app.command("list")
def list_personas(
    role: Annotated[
        str | None,
        typer.Option(
            help="Only this role: pm, backend, frontend, rust, devops, qa, security, design, "
            "data or docs."
        ),
    ] = None,
    skill: Annotated[str | None, typer.Option(help="Only personas with this skill.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (by name).")] = 0,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The catalogue, by name (a tenant's token: its tenant's; else the shared one)."""
    with connect(api_url, token) as client:
        people = client.get("/v1/personas", role=role, skill=skill, limit=limit, offset=offset)
    if as_json:
        print_json(people)
        return
    console.print(persona_table(people))
    more = f"; more with --offset {offset + limit}" if len(people) == limit else ""
    err.print(f"{len(people)} persona(s){more}", highlight=False, markup=False)


@personas_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The persona's name.")],
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """One persona in full, its working style too."""
    with connect(api_url, token) as client:
        persona = client.get(f"/v1/personas/{quote(name, safe='')}")
    if as_json:
        print_json(persona)
    else:
        console.print(persona_panel(persona))


@personas_app.command("add")
def add(
    file: Annotated[
        Path, typer.Argument(help="A YAML or JSON list of personas (or `personas:` holding one).")
    ],
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Store personas from a YAML or JSON file; a name already there is replaced.

    Each needs `name` and `role`; `skills`, `agents`, `style`, `author_name` and
    `author_email` are optional. Stored 1000 at a time, each thousand all or nothing."""
    people = _read_personas(file)
    stored: list[dict[str, Any]] = []
    with connect(api_url, token) as client:
        for start in range(0, len(people), BATCH):
            stored += client.post("/v1/personas", people[start : start + BATCH])
    if as_json:
        print_json(stored)
        return
    console.print(persona_table(stored, title="Stored"))
    err.print(f"Stored {len(stored)} persona(s).", highlight=False, markup=False)


@personas_app.command("generate")
def generate(
    count: Annotated[int, typer.Option(min=1, max=MAX_COUNT, help="How many personas.")],
    seed: Annotated[
        int, typer.Option(min=0, max=MAX_SEED, help="The same seed makes the same personas.")
    ],
    local: Annotated[
        bool,
        typer.Option(
            "--local", help="Make them here and print them, without a server; store none."
        ),
    ] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Generate personas from a seed: the same count and seed make the same personas.

    They are spread evenly over the ten roles. The server stores them (replacing personas
    of the same names; at most 10,000 a request); with --local they are only printed
    (--json: every field, to compare)."""
    if local:
        from swarm_common.personas import generate as make

        people = [p.model_dump() for p in make(count, seed=seed)]
        if as_json:
            print_json(people)
        else:
            console.print(persona_table(people, title=f"Personas of seed {seed}"))
        return
    with connect(api_url, token) as client:
        made = client.post("/v1/personas/generate", {"count": count, "seed": seed})
    if as_json:
        print_json(made)
        return
    err.print(
        f"Generated {made['count']} persona(s) from seed {made['seed']}: {made['created']} new, "
        f"{made['count'] - made['created']} replaced.",
        highlight=False,
        markup=False,
    )


@personas_app.command("rm")
def rm(
    name: Annotated[str, typer.Argument(help="The persona's name.")],
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Remove a persona from the catalogue."""
    with connect(api_url, token) as client:
        removed = client.delete(f"/v1/personas/{quote(name, safe='')}")
    if as_json:
        print_json(removed)
    else:
        err.print(f"Removed persona {escape(removed['name'])}.", highlight=False)


def _read_personas(path: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML or JSON: {exc}") from None
    if isinstance(data, dict) and set(data) == {"personas"}:
        data = data["personas"]
    if not isinstance(data, list) or not data or not all(isinstance(p, dict) for p in data):
        raise CliError(f"{path} must hold a list of personas (mappings with name and role)")
    return data
