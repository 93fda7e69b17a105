"""How far a session is, how long it has taken, how long it may still take, and what its
agents spent (tokens and cost), per session and per task.

Spend is summed over every attempt (a retried task paid for each try), the planning agent's
runs included; counts and time are the graph's (tasks of kind `work`). Token counts are
what the agent CLIs reported: `input` (including cached input), `cached_input`, `output`;
`tokens` is input plus output.

The estimate of time left divides the tasks left by the rate at which tasks have ended since
the first attempt started: it takes the durations seen and the parallelism seen into
account, and knows nothing until one task has ended.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Numeric, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnClause

from swarm_common.messages import utcnow
from swarm_common.states import TERMINAL_TASK_STATES
from swarm_orchestrator.db.models import Attempt, Session, Task

__all__ = ["Progress", "Spend", "session_progress", "task_spend"]


@dataclass
class Spend:
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None

    @property
    def tokens(self) -> int | None:
        if not self.usage:
            return None
        return self.usage.get("input", 0) + self.usage.get("output", 0)


@dataclass
class Progress:
    total: int
    ended: int
    counts: dict[str, int]
    started_at: datetime | None
    elapsed_s: float
    eta_s: float | None
    mean_task_s: float | None
    spend: Spend

    @property
    def percent(self) -> float:
        return round(100.0 * self.ended / self.total, 1) if self.total else 0.0


_KEY: ColumnClause[str] = literal_column("u.key")
_VALUE: ColumnClause[str] = literal_column("u.value")


async def task_spend(
    db: AsyncSession,
    *,
    session_id: uuid.UUID | None = None,
    task_ids: Collection[uuid.UUID] | None = None,
) -> dict[uuid.UUID, Spend]:
    """Tokens and cost of each task (of a session, or the tasks named), over all attempts."""
    scope: list[Any] = []
    if session_id is not None:
        scope.append(Task.session_id == session_id)
    if task_ids is not None:
        scope.append(Attempt.task_id.in_(list(task_ids)))
    spend: dict[uuid.UUID, Spend] = {}
    costs = await db.execute(
        select(Attempt.task_id, func.sum(Attempt.cost_usd))
        .join(Task, Task.id == Attempt.task_id)
        .where(*scope, Attempt.cost_usd.is_not(None))
        .group_by(Attempt.task_id)
    )
    for task_id, cost in costs:
        if cost is not None:
            spend.setdefault(task_id, Spend()).cost_usd = float(cost)
    each = func.jsonb_each_text(Attempt.usage).table_valued("key", "value").alias("u")
    tokens = await db.execute(
        select(Attempt.task_id, _KEY, func.sum(func.cast(_VALUE, Numeric)))
        .select_from(Attempt)
        .join(Task, Task.id == Attempt.task_id)
        .join(each, literal_column("true"))
        .where(*scope, Attempt.usage.is_not(None), _VALUE.op("~")(r"^\d{1,18}$"))
        .group_by(Attempt.task_id, _KEY)
    )
    for task_id, key, total in tokens:
        spend.setdefault(task_id, Spend()).usage[str(key)] = int(total)
    await _add_contenders(db, spend, session_id=session_id, task_ids=task_ids)
    return spend


async def _add_contenders(
    db: AsyncSession,
    spend: dict[uuid.UUID, Spend],
    *,
    session_id: uuid.UUID | None,
    task_ids: Collection[uuid.UUID] | None,
) -> None:
    """A best-of-N task's spend is its contenders', summed (they run for it)."""
    scope: list[Any] = [Task.races_task_id.is_not(None)]
    if session_id is not None:
        scope.append(Task.session_id == session_id)
    if task_ids is not None:
        scope.append(Task.races_task_id.in_(list(task_ids)))
    racers = (await db.execute(select(Task.id, Task.races_task_id).where(*scope))).all()
    if not racers:
        return
    theirs = (
        spend if session_id is not None else await task_spend(db, task_ids=[r.id for r in racers])
    )
    for racer, raced in racers:
        mine = theirs.get(racer)
        if mine is None or raced is None:
            continue
        total = spend.setdefault(raced, Spend())
        if mine.cost_usd is not None:
            total.cost_usd = (total.cost_usd or 0.0) + mine.cost_usd
        for key, n in mine.usage.items():
            total.usage[key] = total.usage.get(key, 0) + n


async def session_progress(db: AsyncSession, session: Session) -> Progress:
    counts: dict[str, int] = dict(
        (
            await db.execute(
                select(Task.status, func.count())
                .where(Task.session_id == session.id, Task.kind == "work")
                .group_by(Task.status)
            )
        ).all()
    )
    total = sum(counts.values())
    ended = sum(n for status, n in counts.items() if status in TERMINAL_TASK_STATES)
    first_start, mean_s = (
        await db.execute(
            select(
                func.min(Attempt.started_at),
                func.avg(func.extract("epoch", Attempt.finished_at - Attempt.started_at)),
            )
            .join(Task, Task.id == Attempt.task_id)
            .where(Task.session_id == session.id, Task.kind == "work")
        )
    ).one()
    now = utcnow()
    until = session.finished_at or now
    elapsed = max(0.0, (until - session.created_at).total_seconds())
    left = total - ended
    eta: float | None = None
    if left == 0 and total:
        eta = 0.0
    elif ended and first_start is not None and session.status != "cancelled":
        working = max(1e-3, (now - first_start).total_seconds())
        eta = round(left * working / ended, 1)
    per_task = await task_spend(db, session_id=session.id)
    spend = Spend()
    for one in per_task.values():
        for key, n in one.usage.items():
            spend.usage[key] = spend.usage.get(key, 0) + n
        if one.cost_usd is not None:
            spend.cost_usd = (spend.cost_usd or 0.0) + one.cost_usd
    if spend.cost_usd is not None:
        spend.cost_usd = round(spend.cost_usd, 6)
    return Progress(
        total=total,
        ended=ended,
        counts=counts,
        started_at=first_start,
        elapsed_s=round(elapsed, 1),
        eta_s=eta,
        mean_task_s=round(float(mean_s), 1) if mean_s is not None else None,
        spend=spend,
    )
