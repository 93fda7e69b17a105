"""`/v1/usage` and `/v1/prices`: tokens and cost of ended attempts, grouped by session,
task, agent kind, persona, tenant or day (`graph.usage`), and the price table they are
priced by (`swarm_common.prices`, with `SWARM_PRICES` on top). A tenant's token sums its
tenant's attempts only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from swarm_common.prices import PRICES_AS_OF
from swarm_orchestrator.api.deps import DbDep, StateDep
from swarm_orchestrator.api.schemas import error_responses
from swarm_orchestrator.api.security import Viewer
from swarm_orchestrator.errors import SwarmError
from swarm_orchestrator.graph import sessions, usage
from swarm_orchestrator.graph.usage import GROUPS, Group, Scope, UsageRow

router = APIRouter(prefix="/v1", tags=["usage"])

MAX_ROWS = 10_000


class UsageRowPublic(BaseModel):
    key: str | None = Field(
        description="The group: a session or task id, an agent kind, a persona, a tenant, "
        "a date (UTC); null for none (no persona, no tenant) and in `total`."
    )
    label: str | None = Field(description="A session's title or a task's key; else null.")
    attempts: int
    input: int = Field(description="Input tokens, cached ones included.")
    cached_input: int
    output: int
    tokens: int = Field(description="Input plus output.")
    cost_usd: float = Field(description="Priced by the price table when each attempt ended.")
    reported_cost_usd: float | None = Field(
        description="What the agent CLIs claimed, over the attempts whose CLI claimed any."
    )


class UsagePublic(BaseModel):
    group_by: Group
    session_id: uuid.UUID | None
    since: datetime | None
    until: datetime | None
    rows: list[UsageRowPublic] = Field(
        description="Days in order; other groups the costliest first (at most `limit`)."
    )
    total: UsageRowPublic = Field(description="Over every attempt counted, rows left out too.")


class PricePublic(BaseModel):
    input: float
    cached_input: float
    output: float


class PricesPublic(BaseModel):
    as_of: str = Field(description="When the built-in table was last checked.")
    unit: str = "USD per million tokens"
    models: dict[str, PricePublic] = Field(
        description="Every entry in force: a model is priced by the longest one its name "
        "begins with."
    )
    defaults: dict[str, str] = Field(
        description="What each agent kind's unknown or unnamed model is priced as."
    )
    overrides: dict[str, PricePublic] = Field(
        description="The entries `SWARM_PRICES` sets (replacing or adding to the built-in)."
    )


def _public(row: UsageRow) -> UsageRowPublic:
    return UsageRowPublic(
        key=row.key,
        label=row.label,
        attempts=row.attempts,
        input=row.input,
        cached_input=row.cached_input,
        output=row.output,
        tokens=row.tokens,
        cost_usd=float(row.cost_usd),
        reported_cost_usd=None if row.reported_cost_usd is None else float(row.reported_cost_usd),
    )


def _utc(at: datetime | None) -> datetime | None:
    """A time without a zone is UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


@router.get("/usage", responses=error_responses(404))
async def get_usage(
    db: DbDep,
    who: Viewer,
    group_by: Annotated[
        str, Query(max_length=20, description=f"One of {', '.join(GROUPS)}.")
    ] = "session",
    session_id: Annotated[uuid.UUID | None, Query(description="Only this session.")] = None,
    since: Annotated[
        datetime | None, Query(description="Attempts that ended at or after this (UTC).")
    ] = None,
    until: Annotated[datetime | None, Query(description="Attempts that ended before this.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
) -> UsagePublic:
    """Tokens and cost of the ended attempts the caller may see, summed per group, with
    the total. 400 `invalid_group_by` names the groups."""
    if group_by not in GROUPS:
        raise SwarmError(
            f"group_by must be one of {', '.join(GROUPS)}",
            code="invalid_group_by",
            details={"allowed": list(GROUPS)},
        )
    if session_id is not None:
        await sessions.get_session(db, session_id, seen_by=who)
    scope = Scope(tenant=who.tenant, session_id=session_id, since=_utc(since), until=_utc(until))
    group: Group = group_by  # type: ignore[assignment]  # checked above
    rows, total = await usage.usage(db, group=group, scope=scope, limit=limit)
    return UsagePublic(
        group_by=group,
        session_id=session_id,
        since=scope.since,
        until=scope.until,
        rows=[_public(r) for r in rows],
        total=_public(total),
    )


@router.get("/prices", responses=error_responses())
async def get_prices(state: StateDep, who: Viewer) -> PricesPublic:
    """The price table every attempt's cost is priced by: the built-in one of `as_of`,
    with `SWARM_PRICES` on top."""
    table = state.settings.price_table().as_dict()
    overrides = state.settings.price_overrides()
    return PricesPublic(
        as_of=PRICES_AS_OF,
        models={name: PricePublic(**p) for name, p in table["models"].items()},
        defaults=table["defaults"],
        overrides={name: PricePublic(**p.as_dict()) for name, p in sorted(overrides.items())},
    )
