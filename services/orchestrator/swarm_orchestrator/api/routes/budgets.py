"""Budgets (`graph/budgets.py`): a session's (`/v1/sessions/{id}/budget`: operators set it,
viewers read it with what is spent) and a tenant's (`/v1/tenants/{tenant}/budget`: an admin
without a tenant sets it, since it is what caps the tenant; the tenant's own tokens read
it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.session_settings import BudgetConfig
from swarm_orchestrator.access.tokens import Principal, check_name
from swarm_orchestrator.api.deps import DbDep, StateDep
from swarm_orchestrator.api.schemas import error_responses
from swarm_orchestrator.api.security import Operator, SystemAdmin, Viewer
from swarm_orchestrator.db.models import BudgetWarning, Session, TenantBudget
from swarm_orchestrator.errors import Forbidden, Invalid
from swarm_orchestrator.graph import budgets, sessions
from swarm_orchestrator.graph.budgets import Limit, Spent

router = APIRouter(tags=["budgets"])

_ERRORS = error_responses(404, 409)


class SpentPublic(BaseModel):
    usd: float = Field(description="US dollars, priced from the attempts' usage.")
    tokens: int = Field(description="Input plus output tokens.")


class RemainingPublic(BaseModel):
    usd: float | None = Field(description="Null: no dollar limit.")
    tokens: int | None = Field(description="Null: no token limit.")


class TenantBudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    usd: float | None = Field(
        None, ge=0.000001, le=999_999, description="Most US dollars; null: none."
    )
    tokens: int | None = Field(
        None, gt=0, le=10**12, description="Most tokens (input and output); null: none."
    )


class TenantBudgetPublic(BaseModel):
    tenant: str
    usd: float | None
    tokens: int | None
    spent: SpentPublic = Field(description="What all the tenant's sessions have spent.")
    remaining: RemainingPublic
    exhausted: bool = Field(description="A limit is spent: its sessions start nothing new.")
    updated_at: datetime | None = None
    updated_by: str | None = None


class SessionBudgetPublic(BaseModel):
    session_id: uuid.UUID
    budget: BudgetConfig | None = Field(description="The session's `settings.budget`.")
    spent: SpentPublic
    remaining: RemainingPublic = Field(description="Of the session's own limits.")
    warned: list[str] = Field(
        description="Limits whose 80% warning was given (`session.usd=10`, `tenant.tokens=…`)."
    )
    exhausted: bool = Field(
        description="A limit (the session's or its tenant's) is spent: nothing new starts."
    )
    tenant: TenantBudgetPublic | None = Field(
        None, description="The session's tenant's budget, when it has one."
    )


def _spent(used: Spent) -> SpentPublic:
    return SpentPublic(usd=float(used.usd), tokens=used.tokens)


def _remaining(limits: list[Limit]) -> RemainingPublic:
    left = {x.unit: max(x.amount - x.spent, Decimal(0)) for x in limits}
    return RemainingPublic(
        usd=float(left["usd"]) if "usd" in left else None,
        tokens=int(left["tokens"]) if "tokens" in left else None,
    )


def _tenant_public(row: TenantBudget | None, tenant: str, used: Spent) -> TenantBudgetPublic:
    usd = row.usd if row is not None else None
    tokens = row.tokens if row is not None else None
    limits = [
        *([Limit("tenant", "usd", Decimal(usd), used.usd)] if usd is not None else []),
        *(
            [Limit("tenant", "tokens", Decimal(tokens), Decimal(used.tokens))]
            if tokens is not None
            else []
        ),
    ]
    return TenantBudgetPublic(
        tenant=tenant,
        usd=float(usd) if usd is not None else None,
        tokens=tokens,
        spent=_spent(used),
        remaining=_remaining(limits),
        exhausted=any(x.exhausted for x in limits),
        updated_at=row.updated_at if row is not None else None,
        updated_by=row.updated_by if row is not None else None,
    )


async def _session_public(db: AsyncSession, session: Session) -> SessionBudgetPublic:
    now = await budgets.standing(db, session)
    used = now.session if now.budget is not None else await budgets.spent(db, session_id=session.id)
    keys = {x.key for x in now.limits}
    warned = (
        await db.scalars(select(BudgetWarning.limit).where(BudgetWarning.session_id == session.id))
    ).all()
    tenant = None
    if now.tenant_budget is not None and session.tenant is not None:
        tenant = _tenant_public(now.tenant_budget, session.tenant, now.tenant or Spent())
    return SessionBudgetPublic(
        session_id=session.id,
        budget=now.budget,
        spent=_spent(used),
        remaining=_remaining([x for x in now.limits if x.scope == "session"]),
        warned=sorted(w for w in warned if w in keys),
        exhausted=bool(now.exhausted),
        tenant=tenant,
    )


@router.get("/v1/sessions/{session_id}/budget", responses=_ERRORS)
async def get_session_budget(session_id: uuid.UUID, db: DbDep, who: Viewer) -> SessionBudgetPublic:
    """The session's budget, what it (and its tenant) spent, what is left, which warnings
    were given, and whether it is spent."""
    session = await sessions.get_session(db, session_id, seen_by=who)
    return await _session_public(db, session)


@router.put("/v1/sessions/{session_id}/budget", responses=_ERRORS)
async def set_session_budget(
    session_id: uuid.UUID, body: BudgetConfig, db: DbDep, state: StateDep, who: Operator
) -> SessionBudgetPublic:
    """Replace the session's budget (`{}`: no limits). A session suspended because its
    budget was spent runs again once the new one is not (its ready tasks are queued); one
    lowered below what is spent is suspended (`on_exhausted: stop` also stops its agents)."""
    await sessions.get_session(db, session_id, seen_by=who)
    session = await budgets.set_session_budget(
        db, session_id=session_id, budget=body, keys=state.keys, actor=who.actor
    )
    state.notify()
    return await _session_public(db, session)


def _tenant(tenant: str, who: Principal) -> str:
    try:
        check_name(tenant, "tenant")
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_tenant") from None
    if not who.can_see(tenant):
        raise Forbidden(
            "a tenant's token reads its own tenant's budget only", details={"tenant": who.tenant}
        )
    return tenant


TenantPath = Annotated[str, Path(min_length=1, max_length=100)]


@router.get("/v1/tenants/{tenant}/budget", responses=_ERRORS)
async def get_tenant_budget(tenant: TenantPath, db: DbDep, who: Viewer) -> TenantBudgetPublic:
    """A tenant's budget (null limits: none) and what all its sessions have spent."""
    tenant = _tenant(tenant, who)
    row = await db.get(TenantBudget, tenant)
    return _tenant_public(row, tenant, await budgets.spent(db, tenant=tenant))


@router.put("/v1/tenants/{tenant}/budget", responses=_ERRORS)
async def set_tenant_budget(
    tenant: TenantPath, body: TenantBudgetBody, db: DbDep, state: StateDep, who: SystemAdmin
) -> TenantBudgetPublic:
    """Set a tenant's budget (an admin without a tenant). Once spent, every active session
    of the tenant is suspended (`budget_exhausted`); raised, they resume."""
    tenant = _tenant(tenant, who)
    row = await budgets.set_tenant_budget(
        db, tenant=tenant, usd=body.usd, tokens=body.tokens, actor=who.actor
    )
    await budgets.enforce_tenants(
        state.sessionmaker, keys=state.keys, tenant=tenant, actor=who.actor
    )
    state.notify()
    return _tenant_public(row, tenant, await budgets.spent(db, tenant=tenant))
