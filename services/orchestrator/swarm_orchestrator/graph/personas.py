"""The persona catalogue: who a tenant's logical agents are (`swarm_common.personas`).

What it owns: the `personas` rows (the only writer). A tenant's token works on its
tenant's catalogue; a token without a tenant on the shared one (tenant null). Storing a
persona whose name the catalogue already holds *replaces* it (an upsert: its role, skills,
agents, style, identity and source are the new ones; `created_at` stays). A list is stored
in one transaction, all of it or none; one tenant's writes take turns (an advisory lock),
so two lists naming the same personas cannot deadlock. A generated population is stored
the same way, in batches of `db.bulk.BATCH` rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, String, Table, any_, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common import personas
from swarm_orchestrator.db.advisory import lock_key
from swarm_orchestrator.db.bulk import BATCH
from swarm_orchestrator.db.models import Persona as PersonaRow
from swarm_orchestrator.errors import Invalid, NotFound

__all__ = [
    "Generated",
    "delete_persona",
    "generate_personas",
    "get_persona",
    "list_personas",
    "store_personas",
]

log = logging.getLogger(__name__)

Source = Literal["manual", "generated"]

_REPLACED = (
    "role",
    "skills",
    "agents",
    "style",
    "author_name",
    "author_email",
    "source",
    "seed",
)
"""What storing a name again replaces (with `updated_at`)."""


@dataclass(frozen=True)
class Generated:
    count: int
    seed: int
    created: int
    """How many of them were new (the others replaced personas of the same names)."""


def _mine(tenant: str | None) -> ColumnElement[bool]:
    return PersonaRow.tenant.is_(None) if tenant is None else PersonaRow.tenant == tenant


def _named(names: list[str]) -> ColumnElement[bool]:
    """Rows of these names: one array parameter, however many names (`IN` takes one
    parameter per name, and PostgreSQL at most 32767 of them)."""
    return PersonaRow.name == any_(bindparam("names", names, type_=ARRAY(String)))


async def store_personas(
    db: AsyncSession, *, people: Sequence[personas.Persona], tenant: str | None, actor: str
) -> list[PersonaRow]:
    """Store `people` in `tenant`'s catalogue in one transaction, each replacing the persona
    of its name if there is one; returns them as stored, in the order given. A name given
    twice is a 422 `duplicate_persona` with nothing stored."""
    names = [p.name for p in people]
    repeated = sorted(n for n, seen in Counter(names).items() if seen > 1)
    if repeated:
        raise Invalid(
            f"a persona name is given more than once: {', '.join(repeated[:10])}",
            code="duplicate_persona",
            details={"names": repeated[:100]},
        )
    async with db.begin():
        created = await _upsert(db, _rows(people, "manual", None), tenant=tenant, names=names)
        stored = {
            row.name: row
            for row in await db.scalars(select(PersonaRow).where(_mine(tenant), _named(names)))
        }
    log.info(
        "personas stored",
        extra={"personas": len(people), "new": created, "tenant": tenant, "by": actor},
    )
    return [stored[n] for n in names]


async def generate_personas(
    db: AsyncSession, *, count: int, seed: int, tenant: str | None, actor: str
) -> Generated:
    """Generate `count` personas from `seed` (`swarm_common.personas.generate`, off the event
    loop) and store them in `tenant`'s catalogue in one transaction, replacing personas of
    the same names: the same seed twice leaves the same rows."""
    try:
        people = await asyncio.to_thread(personas.generate, count, seed=seed)
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_count") from None
    names = [p.name for p in people]
    async with db.begin():
        created = await _upsert(db, _rows(people, "generated", seed), tenant=tenant, names=names)
    log.info(
        "personas generated",
        extra={"personas": count, "seed": seed, "new": created, "tenant": tenant, "by": actor},
    )
    return Generated(count=count, seed=seed, created=created)


def _rows(
    people: Iterable[personas.Persona], source: Source, seed: int | None
) -> Iterable[dict[str, Any]]:
    for p in people:
        yield {**p.model_dump(), "source": source, "seed": seed}


async def _upsert(
    db: AsyncSession, rows: Iterable[dict[str, Any]], *, tenant: str | None, names: list[str]
) -> int:
    """Insert or replace `rows` (in the caller's transaction); how many names were new."""
    await db.execute(select(func.pg_advisory_xact_lock(lock_key(f"personas:{tenant or ''}"))))
    existing = int(
        await db.scalar(
            select(func.count()).select_from(PersonaRow).where(_mine(tenant), _named(names))
        )
        or 0
    )
    table = cast(Table, PersonaRow.__table__)
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[text("coalesce(tenant, '')"), table.c.name],
        set_={**{c: stmt.excluded[c] for c in _REPLACED}, "updated_at": func.now()},
    )
    it = iter(rows)
    while batch := list(islice(it, BATCH)):
        await db.execute(stmt, [{**row, "tenant": tenant} for row in batch])
    return len(names) - existing


async def list_personas(
    db: AsyncSession,
    *,
    tenant: str | None,
    role: str | None = None,
    skill: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[PersonaRow]:
    """`tenant`'s personas by name, of one role or with one skill if asked."""
    stmt = select(PersonaRow).where(_mine(tenant))
    if role is not None:
        stmt = stmt.where(PersonaRow.role == role)
    if skill is not None:
        stmt = stmt.where(PersonaRow.skills.contains([skill]))
    stmt = stmt.order_by(PersonaRow.name).limit(limit).offset(offset)
    return list((await db.scalars(stmt)).all())


async def get_persona(db: AsyncSession, *, tenant: str | None, name: str) -> PersonaRow:
    """One persona of `tenant`'s catalogue, or 404 `persona_not_found`."""
    row = await db.scalar(select(PersonaRow).where(_mine(tenant), PersonaRow.name == name))
    if row is None:
        raise NotFound(f"no persona named {name!r}", code="persona_not_found")
    return row


async def delete_persona(
    db: AsyncSession, *, tenant: str | None, name: str, actor: str
) -> PersonaRow:
    """Remove one persona from `tenant`'s catalogue and return it, or 404
    `persona_not_found`."""
    async with db.begin():
        row: PersonaRow | None = await db.scalar(
            delete(PersonaRow).where(_mine(tenant), PersonaRow.name == name).returning(PersonaRow)
        )
    if row is None:
        raise NotFound(f"no persona named {name!r}", code="persona_not_found")
    log.info("persona removed", extra={"persona": name, "tenant": tenant, "by": actor})
    return row
