"""The persona catalogue: who a tenant's logical agents are (`swarm_common.personas`).

What it owns: the `personas` rows (the only writer). A tenant's token works on its
tenant's catalogue; a token without a tenant on the shared one (tenant null). Storing a
persona whose name the catalogue already holds *replaces* it (an upsert: its role, skills,
agents, style, identity and source are the new ones; `created_at` stays). A list is stored
in one transaction, all of it or none; one tenant's writes take turns (an advisory lock),
so two lists naming the same personas cannot deadlock. A generated population is stored
the same way, in batches of `db.bulk.BATCH` rows.

Which persona a new task runs as is decided here too, in one place for every way tasks are
made (`assign`: a session's graph, tasks added later, an approved plan): the persona it
names, else one of its role's (best on skills, ties to the one with the fewest of the
session's tasks, then by name). The task keeps a snapshot of it (`Assignment.snapshot`), so
a later change of the catalogue leaves queued tasks as they were.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Table, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common import personas
from swarm_common.specs import TaskSpec
from swarm_orchestrator.db.advisory import lock_key
from swarm_orchestrator.db.bulk import BATCH, any_of
from swarm_orchestrator.db.models import Persona as PersonaRow
from swarm_orchestrator.db.models import Task
from swarm_orchestrator.errors import Invalid, NotFound

__all__ = [
    "SNAPSHOT",
    "Assignment",
    "Generated",
    "assign",
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

SNAPSHOT = ("name", "role", "agents", "style", "author_name", "author_email")
"""What a task keeps of its persona (its spec's `assigned_persona`); `agents`, its
preferred kinds, is what routes an `agent: auto` task (`graph.routing`)."""
_THREAD_AT = 500
"""Graphs of this many tasks are matched in a worker thread (the event loop serves others)."""


@dataclass(frozen=True)
class Assignment:
    """The persona a new task runs as, and why."""

    snapshot: dict[str, Any]
    """`SNAPSHOT`'s fields of the catalogue's row, as it was when the task was made."""
    why: str
    """`named`, or the role and the skills that matched (`role backend, skills python`)."""


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
    return any_of(PersonaRow.name, names)


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


# -- who runs a task -----------------------------------------------------------------------


async def require(
    db: AsyncSession, *, names: Sequence[str], tenant: str | None
) -> list[PersonaRow]:
    """The catalogue's rows of `names`; 422 `persona_not_found` naming every one missing."""
    found = list(await db.scalars(select(PersonaRow).where(_mine(tenant), _named(list(names)))))
    missing = sorted(set(names) - {row.name for row in found})
    if missing:
        raise Invalid(
            f"no persona named {', '.join(missing[:10])} in the catalogue",
            code="persona_not_found",
            details={"names": missing[:100]},
        )
    return found


async def assign(
    db: AsyncSession,
    *,
    specs: Sequence[TaskSpec],
    tenant: str | None,
    session_id: uuid.UUID | None = None,
) -> list[Assignment | None]:
    """The persona each of `specs` runs as (in their order; None: none), from `tenant`'s
    catalogue. A spec that names a persona gets it (422 `persona_not_found` naming every
    missing one, when the catalogue lacks any). One without, whose `role` is one of
    `ROLE_NAMES`, gets the persona of that role with the most of its `skills`; among equals
    the one with the fewest tasks of `session_id` (those it holds and those assigned
    before it in `specs`), then the first by name. No persona of the role: none. Reads
    only; the caller stores the tasks in its transaction."""
    named = sorted({s.persona for s in specs if s.persona})
    roles = sorted({s.role for s in specs if not s.persona and s.role in personas.ROLE_NAMES})
    if not named and not roles:
        return [None] * len(specs)
    found: list[PersonaRow] = []
    if named:
        found = await require(db, names=named, tenant=tenant)
    candidates: list[PersonaRow] = []
    if roles:
        candidates = list(
            await db.scalars(
                select(PersonaRow)
                .where(
                    _mine(tenant),
                    any_of(PersonaRow.role, roles),
                )
                .order_by(PersonaRow.name)
            )
        )
    load = await _session_load(db, session_id) if session_id is not None else Counter()
    if len(specs) >= _THREAD_AT:
        return await asyncio.to_thread(_match, specs, found, candidates, load)
    return _match(specs, found, candidates, load)


async def _session_load(db: AsyncSession, session_id: uuid.UUID) -> Counter[str]:
    """How many of the session's tasks each persona runs."""
    name = Task.spec["assigned_persona"]["name"].astext
    rows = await db.execute(
        select(name, func.count())
        .where(Task.session_id == session_id, name.is_not(None))
        .group_by(name)
    )
    return Counter({n: int(c) for n, c in rows.all()})


def _snapshot(row: PersonaRow) -> dict[str, Any]:
    return {field: getattr(row, field) for field in SNAPSHOT}


def _match(
    specs: Sequence[TaskSpec],
    named: Sequence[PersonaRow],
    candidates: Sequence[PersonaRow],
    load: Counter[str],
) -> list[Assignment | None]:
    """The assignment, a pure function of its inputs (deterministic)."""
    by_name = {row.name: _snapshot(row) for row in named}
    of_role: dict[str, list[PersonaRow]] = defaultdict(list)
    for row in candidates:
        of_role[row.role].append(row)
    snapshots = {row.name: _snapshot(row) for row in candidates}
    skills = {row.name: frozenset(row.skills) for row in candidates}
    # the least loaded of a role by (load, name): a heap whose stale entries are skipped
    least: dict[str, list[tuple[int, str]]] = {
        role: [(load[row.name], row.name) for row in rows] for role, rows in of_role.items()
    }
    for heap in least.values():
        heapq.heapify(heap)

    def lightest(role: str) -> str:
        heap = least[role]
        while True:
            count, name = heap[0]
            if count == load[name]:
                return name
            heapq.heapreplace(heap, (load[name], name))

    out: list[Assignment | None] = []
    for spec in specs:
        if spec.persona:
            load[spec.persona] += 1
            out.append(Assignment(snapshot=by_name[spec.persona], why="named"))
            continue
        role = spec.role or ""
        rows = of_role.get(role)
        if not rows:
            out.append(None)
            continue
        wanted = set(spec.skills)
        best: tuple[int, int, str] | None = None  # (-matched skills, load, name): least wins
        if wanted:
            for row in rows:
                n = len(wanted & skills[row.name])
                key = (-n, load[row.name], row.name)
                if n and (best is None or key < best):
                    best = key
        chosen = best[2] if best is not None else lightest(role)
        load[chosen] += 1
        matched = sorted(wanted & skills[chosen])
        why = f"role {spec.role}" + (f", skills {', '.join(matched)}" if matched else "")
        out.append(Assignment(snapshot=snapshots[chosen], why=why))
    return out
