"""Budgets: what a session, and its tenant, may spend, and what happens as it is spent.

Limits are a session's `settings.budget` (`usd`, `tokens`) and its tenant's
`tenant_budgets` row. Spend is summed from the attempts, never kept as a running count:
`attempts.cost_usd` (priced once, when the attempt's result arrives: `graph.pricing`) and
their usage's `input` plus `output` tokens, so a result delivered twice counts once.

`check` runs under the session's lock after an attempt's result is applied (`graph.reports`)
and before ready tasks are queued (`graph.scheduler.queue_ready`):

- **80%** of a limit: one `session.budget_warning` entry per limit and amount
  (`budget_warnings` remembers it, so a redelivered result, a second orchestrator or the
  next check does not repeat it; a raised limit warns anew).
- **Spent**: nothing new is queued, and an active session is `suspended` with the reason
  `budget_exhausted` (`session_state.suspend_for_budget`). With `on_exhausted: stop` its
  queued and running attempts are cancelled at once and their tasks wait (`pending`) to run
  again once the budget is raised: no failure, no retry counted. With `finish` they finish.

`set_session_budget` (`PUT /v1/sessions/{id}/budget`) replaces the session's budget;
`reconcile` then resumes a session suspended for its budget once it is under again (or
suspends it when it is not), and queues what is ready. A tenant's budget
(`set_tenant_budget`) applies to each of its sessions the same way, each in a transaction of
its own (`enforce_tenants`, run when the tenant's budget changes and on every scheduler
sweep, which is how sessions that were idle when the tenant's spend ran out learn of it);
a tenant's sessions stop or finish as their own `on_exhausted` says.

A task's own cap (`per_task_usd`) is held while it runs by its adapter
(`swarm_adapter.spend_cap`): its attempt fails with `budget_exhausted`, never retried
(`graph.retry`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import BigInteger, ColumnElement, case, cast, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import utcnow
from swarm_common.session_settings import BudgetConfig, SessionSettings
from swarm_common.states import AttemptStatus, SessionStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Attempt, BudgetWarning, Session, Task, TenantBudget
from swarm_orchestrator.errors import Invalid
from swarm_orchestrator.graph import session_state, task_state
from swarm_orchestrator.graph.locking import (
    CLOSED_SESSION_STATES,
    lock_open_session,
    lock_session,
    lock_tasks,
)
from swarm_orchestrator.observability import metrics

__all__ = [
    "BUDGET_EXHAUSTED",
    "WARN_AT",
    "Limit",
    "Spent",
    "Standing",
    "check",
    "enforce_tenants",
    "reconcile",
    "set_session_budget",
    "set_tenant_budget",
    "spent",
    "standing",
]

log = logging.getLogger(__name__)

BUDGET_EXHAUSTED = session_state.BUDGET_EXHAUSTED
WARN_AT = Decimal("0.8")
"""The share of a limit at which a session is warned."""

_USD = Decimal("0.000001")


@dataclass(frozen=True)
class Spent:
    usd: Decimal = Decimal(0)
    tokens: int = 0


@dataclass(frozen=True)
class Limit:
    """One limit (`session.usd`, `tenant.tokens`, ...) and what is spent of it."""

    scope: Literal["session", "tenant"]
    unit: Literal["usd", "tokens"]
    amount: Decimal
    spent: Decimal

    @property
    def name(self) -> str:
        return f"{self.scope}.{self.unit}"

    @property
    def key(self) -> str:
        """What a warning of it is remembered by: its name and amount (`session.usd=10`)."""
        return f"{self.name}={_number(self.amount)}"

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.amount

    @property
    def near(self) -> bool:
        return self.spent >= self.amount * WARN_AT

    def said(self) -> dict[str, Any]:
        """What its timeline entries say of it."""
        return {
            "limit": self.name,
            "amount": _number(self.amount),
            "spent": _number(self.spent),
            "percent": round(float(self.spent / self.amount * 100), 1) if self.amount else 100.0,
        }


@dataclass(frozen=True)
class Standing:
    """A session's budget, its tenant's, what each has spent, and the limits they make."""

    budget: BudgetConfig | None
    session: Spent
    tenant_budget: TenantBudget | None = None
    tenant: Spent | None = None
    limits: list[Limit] = field(default_factory=list)

    @property
    def exhausted(self) -> list[Limit]:
        return [limit for limit in self.limits if limit.exhausted]

    @property
    def stops(self) -> bool:
        """Its running agents are stopped once a limit is spent."""
        return self.budget is not None and self.budget.on_exhausted == "stop"


def budget_of(session: Session) -> BudgetConfig | None:
    """The session's `settings.budget` (None when it has none, or its settings do not
    parse: the API stores only valid ones)."""
    raw = (session.settings or {}).get("budget")
    if not raw:
        return None
    try:
        return BudgetConfig.model_validate(raw)
    except ValidationError:
        log.warning("session budget does not parse; ignored", extra={"session_id": str(session.id)})
        return None


def _tokens(key: str) -> ColumnElement[int]:
    value = Attempt.usage[key].astext
    return case((value.op("~")(r"^\d{1,18}$"), cast(value, BigInteger)), else_=0)


async def spent(
    db: AsyncSession, *, session_id: uuid.UUID | None = None, tenant: str | None = None
) -> Spent:
    """What the attempts of a session, or of every session of a tenant, have cost."""
    stmt = select(
        func.coalesce(func.sum(Attempt.cost_usd), 0),
        func.coalesce(func.sum(_tokens("input") + _tokens("output")), 0),
    ).join(Task, Task.id == Attempt.task_id)
    if session_id is not None:
        stmt = stmt.where(Task.session_id == session_id)
    else:
        stmt = stmt.join(Session, Session.id == Task.session_id).where(Session.tenant == tenant)
    usd, tokens = (await db.execute(stmt)).one()
    return Spent(usd=Decimal(usd or 0), tokens=int(tokens or 0))


async def standing(db: AsyncSession, session: Session) -> Standing:
    """The session's limits and what is spent of them (no query beyond the tenant's budget
    when neither has a limit)."""
    budget = budget_of(session)
    tenant_budget = (
        await db.get(TenantBudget, session.tenant, populate_existing=True)
        if session.tenant is not None
        else None
    )
    limits: list[Limit] = []
    mine = Spent()
    if budget is not None and (budget.usd is not None or budget.tokens is not None):
        mine = await spent(db, session_id=session.id)
        limits += _limits("session", budget.usd, budget.tokens, mine)
    theirs = None
    if tenant_budget is not None and (
        tenant_budget.usd is not None or tenant_budget.tokens is not None
    ):
        theirs = await spent(db, tenant=session.tenant)
        limits += _limits("tenant", tenant_budget.usd, tenant_budget.tokens, theirs)
    return Standing(budget, mine, tenant_budget, theirs, limits)


def _limits(
    scope: Literal["session", "tenant"],
    usd: float | Decimal | None,
    tokens: int | None,
    used: Spent,
) -> list[Limit]:
    found = []
    if usd is not None:
        found.append(Limit(scope, "usd", Decimal(str(usd)), used.usd))
    if tokens is not None:
        found.append(Limit(scope, "tokens", Decimal(tokens), Decimal(used.tokens)))
    return found


async def check(db: AsyncSession, session: Session, *, keys: Keys) -> bool:
    """Warn at 80% of a limit, and act on a spent one (see the module's docstring); the
    caller holds the session's lock. True when the session may start new attempts."""
    now = await standing(db, session)
    if not now.limits:
        return True
    await _warn(db, session, now.limits)
    spent_limits = now.exhausted
    if not spent_limits:
        return True
    if session.status in CLOSED_SESSION_STATES:
        return False
    data = {"limits": [limit.said() for limit in spent_limits]}
    if session_state.suspend_for_budget(db, session, data=data):
        metrics.budget_exhausted(db, limits=[x.name for x in spent_limits])
        log.warning(
            "session suspended: its budget is spent",
            extra={"session_id": str(session.id), "limits": [x.name for x in spent_limits]},
        )
    if now.stops:
        await _stop_in_flight(db, session, keys=keys)
    return False


async def _warn(db: AsyncSession, session: Session, limits: list[Limit]) -> None:
    """One `session.budget_warning` per limit and amount past 80%: the row inserted first
    (the primary key decides between two writers) is the one that writes it."""
    for limit in limits:
        if not limit.near:
            continue
        added = await db.scalar(
            insert(BudgetWarning)
            .values(session_id=session.id, limit=limit.key)
            .on_conflict_do_nothing()
            .returning(BudgetWarning.limit)
        )
        if added is not None:
            metrics.budget_warned(db, limit=limit.name)
            timeline.record(
                db, session_id=session.id, type="session.budget_warning", data=limit.said()
            )


async def _stop_in_flight(db: AsyncSession, session: Session, *, keys: Keys) -> int:
    """Cancel the session's queued and running attempts now (a cancel request goes to
    their adapters); their tasks wait to run again once the budget is raised."""
    tasks = await lock_tasks(db, session, Task.status.in_(task_state.IN_FLIGHT))
    for task in tasks:
        await task_state.stop_attempt(
            db, task, status=AttemptStatus.CANCELLED, reason=BUDGET_EXHAUSTED, keys=keys
        )
        task_state.reschedule(
            db,
            task,
            reason="stopped: the session's budget is spent; it runs again once it is raised",
            retry_at=None,
            entry=task_state.Entry(
                "attempt.cancelled", data={"reason": BUDGET_EXHAUSTED, "will_retry": True}
            ),
        )
    if tasks:
        log.warning(
            "attempts stopped: the session's budget is spent",
            extra={"session_id": str(session.id), "tasks": [t.key for t in tasks]},
        )
    return len(tasks)


async def reconcile(db: AsyncSession, session: Session, *, keys: Keys, actor: str) -> bool:
    """After a budget changed (the caller holds the session's lock): suspend the session
    when a limit is spent, resume one suspended for its budget when none is, and queue
    what is ready. True when its state changed."""
    from swarm_orchestrator.graph import scheduler  # it imports this module

    was = session.status
    if not await check(db, session, keys=keys):
        return session.status != was
    now = await standing(db, session)
    data = {"limits": [limit.said() for limit in now.limits]}
    resumed = await session_state.resume_for_budget(db, session, actor=actor, data=data)
    await scheduler.queue_ready(db, session=session, keys=keys)
    return resumed


async def set_session_budget(
    db: AsyncSession, *, session_id: uuid.UUID, budget: BudgetConfig, keys: Keys, actor: str
) -> Session:
    """Replace a session's budget (`settings.budget`) and act on it at once (`reconcile`);
    commits. A cancelled or finalized session is 409 `session_closed`."""
    session = await lock_open_session(db, session_id)
    stored = budget.model_dump(mode="json")
    settings = {**(session.settings or {}), "budget": stored}
    try:
        SessionSettings.model_validate(settings)
    except ValidationError as exc:
        raise Invalid(
            "the session's settings do not validate with this budget",
            code="invalid_settings",
            details=exc.errors(include_url=False, include_context=False),
        ) from None
    session.settings = settings
    session.updated_at = utcnow()
    timeline.record(
        db, session_id=session.id, type="session.budget_set", actor=actor, data={"budget": stored}
    )
    await reconcile(db, session, keys=keys, actor=actor)
    await db.commit()
    log.info(
        "session budget set",
        extra={"session_id": str(session.id), "actor": actor, "budget": stored},
    )
    return session


async def set_tenant_budget(
    db: AsyncSession, *, tenant: str, usd: float | None, tokens: int | None, actor: str
) -> TenantBudget:
    """Store a tenant's budget (null limits: none); commits. The caller then applies it to
    the tenant's sessions (`enforce_tenants`)."""
    values = {
        "usd": None if usd is None else Decimal(str(usd)).quantize(_USD),
        "tokens": tokens,
        "updated_at": utcnow(),
        "updated_by": actor,
    }
    await db.execute(
        insert(TenantBudget)
        .values(tenant=tenant, **values)
        .on_conflict_do_update(index_elements=[TenantBudget.tenant], set_=values)
    )
    await db.commit()
    row = await db.get(TenantBudget, tenant, populate_existing=True)
    assert row is not None
    log.warning(
        "tenant budget set",
        extra={"tenant": tenant, "usd": usd, "tokens": tokens, "by": actor},
    )
    return row


async def enforce_tenants(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    keys: Keys,
    tenant: str | None = None,
    actor: str = "system",
) -> int:
    """Apply tenant budgets (every tenant's, or `tenant`'s) to their sessions: the active
    ones of a tenant whose budget is spent are suspended (and stopped when they say so),
    those suspended for their budget resumed once no limit of theirs is spent (`reconcile`).
    Each session in a transaction of its own, under its lock. Returns how many changed."""
    async with sessionmaker() as db:
        stmt = select(TenantBudget)
        if tenant is not None:
            stmt = stmt.where(TenantBudget.tenant == tenant)
        targets: list[uuid.UUID] = []
        for row in (await db.scalars(stmt)).all():
            used = await spent(db, tenant=row.tenant)
            over = any(x.exhausted for x in _limits("tenant", row.usd, row.tokens, used))
            targets += (await db.scalars(_affected(row.tenant, over=over))).all()
    changed = 0
    for session_id in targets:
        async with sessionmaker() as db, db.begin():
            session = await lock_session(db, session_id)
            if session is not None and await reconcile(db, session, keys=keys, actor=actor):
                changed += 1
    if changed:
        log.warning("tenant budgets applied", extra={"tenant": tenant, "sessions": changed})
    return changed


def _affected(tenant: str, *, over: bool) -> Any:
    """The sessions of `tenant` its budget changes: the active ones when it is spent, else
    those suspended for their budget (their own may still be spent: `reconcile` looks)."""
    if over:
        state = Session.status == SessionStatus.ACTIVE
    else:
        state = (Session.status == SessionStatus.SUSPENDED) & (
            Session.suspended_reason == BUDGET_EXHAUSTED
        )
    return select(Session.id).where(Session.tenant == tenant, state).order_by(Session.id)


def _number(value: Decimal) -> float | int:
    """A limit or spend as JSON shows it: tokens whole, dollars to the micro-dollar."""
    if value == value.to_integral_value():
        return int(value)
    return float(value.quantize(_USD))
