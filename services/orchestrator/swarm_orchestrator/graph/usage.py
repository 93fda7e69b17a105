"""What agents used and cost, summed over ended attempts and grouped by session, task, agent
kind, persona, tenant or day: the figures of `GET /v1/usage` and `swarm usage`.

Each attempt counts once, as it ran: its own agent kind (a task may change kind on a
failover), the cost priced when its result arrived (`graph.pricing`), the tokens its CLI
reported (`input` includes `cached_input`; `tokens` is input plus output). An attempt ended
without a result (cancelled or lost before it reported) counts with what it has, nothing.
A day is the UTC date its attempt ended; `since`/`until` bound that instant. The persona is
the one a task ran as (its assigned persona, else the one it named); no persona, no tenant
groups under null.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import BigInteger, ColumnElement, Date, Select, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from swarm_orchestrator.db.models import Attempt, Session, Task

__all__ = ["GROUPS", "Group", "Scope", "UsageRow", "usage"]

Group = Literal["session", "task", "agent", "persona", "tenant", "day"]
GROUPS: tuple[str, ...] = get_args(Group)
TOKEN_KINDS = ("input", "cached_input", "output")

_Expr = ColumnElement[Any] | InstrumentedAttribute[Any]


@dataclass(frozen=True)
class Scope:
    """Which attempts count: a tenant's (None: every tenant's), one session's, a time span."""

    tenant: str | None = None
    session_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class UsageRow:
    key: str | None
    """The group's value: a session or task id, a kind, a persona, a tenant, a date."""
    label: str | None
    """What people call it: a session's title, a task's key; None for the others."""
    attempts: int
    input: int
    cached_input: int
    output: int
    cost_usd: Decimal
    reported_cost_usd: Decimal | None
    """What the CLIs claimed, summed over the attempts whose CLI claimed anything."""

    @property
    def tokens(self) -> int:
        return self.input + self.output


def _tokens(kind: str) -> ColumnElement[Any]:
    """One token count of an attempt's usage; 0 for none (or anything not a count)."""
    value = Attempt.usage[kind].astext
    return func.coalesce(
        func.sum(case((value.op("~")(r"^\d{1,18}$"), cast(value, BigInteger)), else_=0)), 0
    )


def _keys(group: Group) -> tuple[_Expr, _Expr | None]:
    """The SQL of a group's key and label."""
    if group == "session":
        return Session.id, Session.title
    if group == "task":
        return Task.id, Task.key
    if group == "agent":
        return Attempt.agent, None
    if group == "persona":
        snapshot = Task.spec["assigned_persona"]["name"].astext
        return func.coalesce(snapshot, Task.spec["persona"].astext), None
    if group == "tenant":
        return Session.tenant, None
    return cast(func.timezone("UTC", Attempt.finished_at), Date), None


def _scoped(stmt: Select[Any], scope: Scope) -> Select[Any]:
    stmt = (
        stmt.select_from(Attempt)
        .join(Task, Task.id == Attempt.task_id)
        .join(Session, Session.id == Task.session_id)
        .where(Attempt.finished_at.is_not(None))
    )
    if scope.tenant is not None:
        stmt = stmt.where(Session.tenant == scope.tenant)
    if scope.session_id is not None:
        stmt = stmt.where(Task.session_id == scope.session_id)
    if scope.since is not None:
        stmt = stmt.where(Attempt.finished_at >= scope.since)
    if scope.until is not None:
        stmt = stmt.where(Attempt.finished_at < scope.until)
    return stmt


def _sums() -> list[ColumnElement[Any]]:
    return [
        func.count(Attempt.id),
        *(_tokens(kind) for kind in TOKEN_KINDS),
        func.coalesce(func.sum(Attempt.cost_usd), 0),
        func.sum(Attempt.reported_cost_usd),
    ]


def _row(key: Any, label: Any, sums: Any) -> UsageRow:
    attempts, input_, cached, output, cost, reported = sums
    return UsageRow(
        key=None if key is None else str(key),
        label=None if label is None else str(label),
        attempts=int(attempts),
        input=int(input_),
        cached_input=int(cached),
        output=int(output),
        cost_usd=Decimal(cost),
        reported_cost_usd=None if reported is None else Decimal(reported),
    )


async def usage(
    db: AsyncSession, *, group: Group, scope: Scope, limit: int = 1000
) -> tuple[list[UsageRow], UsageRow]:
    """The groups (days in order; others the costliest first, at most `limit`) and the
    total over every attempt in `scope`, whatever `limit` leaves out."""
    key, label = _keys(group)
    columns = [key, label] if label is not None else [key]
    stmt = _scoped(select(*columns, *_sums()), scope).group_by(*columns)
    if group == "day":
        stmt = stmt.order_by(key)
    else:
        stmt = stmt.order_by(func.coalesce(func.sum(Attempt.cost_usd), 0).desc(), key)
    rows = []
    for found in (await db.execute(stmt.limit(limit))).all():
        values = tuple(found)
        if label is None:
            rows.append(_row(values[0], None, values[1:]))
        else:
            rows.append(_row(values[0], values[1], values[2:]))
    total = (await db.execute(_scoped(select(*_sums()), scope))).one()
    return rows, _row(None, None, tuple(total))
