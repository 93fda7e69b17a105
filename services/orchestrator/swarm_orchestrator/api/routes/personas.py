"""`/v1/personas`: the persona catalogue — store personas (a name stored again replaces
its persona), generate a reproducible population from a seed, list, read and remove them.
A tenant's token works on its tenant's catalogue; a token without a tenant on the shared
one (personas of no tenant)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field

from swarm_common import personas as catalogue
from swarm_common.personas import Persona, RoleName
from swarm_orchestrator.api.deps import DbDep
from swarm_orchestrator.api.schemas import MAX_INT, error_responses
from swarm_orchestrator.api.security import Operator, Viewer
from swarm_orchestrator.errors import Invalid, NotFound
from swarm_orchestrator.graph import personas

router = APIRouter(prefix="/v1/personas", tags=["personas"])

MAX_STORED = 1000
"""Most personas one `POST /v1/personas` stores."""
MAX_GENERATED = 10_000
"""Most personas one `POST /v1/personas/generate` makes."""

_ERRORS = error_responses()
_ONE = error_responses(404)


class PersonaPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    tenant: str | None = Field(description="Null: the shared catalogue.")
    role: RoleName
    skills: list[str]
    agents: list[str] = Field(description="Preferred agent kinds, the most preferred first.")
    style: str
    author_name: str
    author_email: str
    source: str = Field(description="`manual` (stored as given) or `generated`.")
    seed: int | None = Field(description="The seed a generated persona came from.")
    created_at: datetime
    updated_at: datetime


class PersonaGenerate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=MAX_GENERATED, description="How many personas to make.")
    seed: int = Field(ge=0, le=MAX_INT, description="The same seed makes the same personas.")


class PersonaGenerated(BaseModel):
    count: int
    seed: int
    created: int = Field(description="How many were new; the others replaced their namesakes.")


def _checked_name(name: str) -> str:
    """A name no persona can have is not found (it is never looked up)."""
    try:
        return catalogue.check_name(name)
    except ValueError:
        raise NotFound(f"no persona named {name[:100]!r}", code="persona_not_found") from None


@router.get("", responses=_ERRORS)
async def list_personas(
    db: DbDep,
    who: Viewer,
    role: RoleName | None = None,
    skill: Annotated[
        str | None, Query(max_length=40, description="Only personas with this skill.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> list[PersonaPublic]:
    """The caller's catalogue, by name."""
    if skill is not None:
        try:
            catalogue.check_skill(skill)
        except ValueError as exc:
            raise Invalid(str(exc), code="invalid_skill") from None
    rows = await personas.list_personas(
        db, tenant=who.tenant, role=role, skill=skill, limit=limit, offset=offset
    )
    return [PersonaPublic.model_validate(row) for row in rows]


@router.post("", status_code=201, responses=_ERRORS)
async def store_personas(
    body: Annotated[list[Persona], Body(min_length=1, max_length=MAX_STORED)],
    db: DbDep,
    who: Operator,
) -> list[PersonaPublic]:
    """Store personas (a JSON array, 1 to 1000) in one transaction; a name the catalogue
    holds already is replaced. Left out, `skills` and `agents` are the role's and the
    commit identity is made from the name. Nothing is stored when any is refused."""
    rows = await personas.store_personas(db, people=body, tenant=who.tenant, actor=who.actor)
    return [PersonaPublic.model_validate(row) for row in rows]


@router.post("/generate", status_code=201, responses=_ERRORS)
async def generate_personas(body: PersonaGenerate, db: DbDep, who: Operator) -> PersonaGenerated:
    """Generate `count` personas from `seed` — spread evenly over the ten roles, names
    unique, the same for the same seed — and store them as `POST /v1/personas` does."""
    made = await personas.generate_personas(
        db, count=body.count, seed=body.seed, tenant=who.tenant, actor=who.actor
    )
    return PersonaGenerated(count=made.count, seed=made.seed, created=made.created)


@router.get("/{name}", responses=_ONE)
async def get_persona(name: str, db: DbDep, who: Viewer) -> PersonaPublic:
    row = await personas.get_persona(db, tenant=who.tenant, name=_checked_name(name))
    return PersonaPublic.model_validate(row)


@router.delete("/{name}", responses=_ONE)
async def delete_persona(name: str, db: DbDep, who: Operator) -> PersonaPublic:
    """Remove a persona; answers it as it was."""
    row = await personas.delete_persona(
        db, tenant=who.tenant, name=_checked_name(name), actor=who.actor
    )
    return PersonaPublic.model_validate(row)
