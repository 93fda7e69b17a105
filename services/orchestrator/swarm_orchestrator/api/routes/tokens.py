"""`/v1/tokens`: create, list and revoke API tokens (admins); `/v1/whoami`: the caller's own
token, for clients that show only what its role may do."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from swarm_common.messages import utcnow
from swarm_orchestrator.access import tokens
from swarm_orchestrator.access.tokens import Forbidden
from swarm_orchestrator.api.deps import DbDep
from swarm_orchestrator.api.schemas import (
    TokenCreate,
    TokenCreated,
    TokenPublic,
    WhoAmI,
    error_responses,
)
from swarm_orchestrator.api.security import Admin, Viewer, skip_redaction

router = APIRouter(tags=["tokens"])

log = logging.getLogger(__name__)

_ERRORS = error_responses(404, 409)


@router.get("/v1/whoami", responses=_ERRORS)
async def whoami(who: Viewer) -> WhoAmI:
    return WhoAmI(name=who.name, role=who.role.value, tenant=who.tenant)


@router.post(
    "/v1/tokens",
    status_code=201,
    responses=_ERRORS,
    dependencies=[Depends(skip_redaction)],
)
async def create_token(body: TokenCreate, db: DbDep, who: Admin) -> TokenCreated:
    """Create a token; the response holds it, and it is never shown again. A tenant's admin
    creates tokens of its own tenant only."""
    tenant = body.tenant
    if who.tenant is not None:
        if tenant not in (None, who.tenant):
            raise Forbidden(
                "a tenant's admin can only create tokens of its own tenant",
                details={"tenant": who.tenant},
            )
        tenant = who.tenant
    expires = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    row, token = await tokens.create_token(
        db, name=body.name, role=body.role, tenant=tenant, created_by=who.actor, expires_at=expires
    )
    log.warning(
        "api token created",
        extra={"token": row.name, "role": row.role, "tenant": row.tenant, "by": who.actor},
    )
    return TokenCreated(**TokenPublic.model_validate(row).model_dump(), token=token)


@router.get("/v1/tokens", responses=_ERRORS)
async def list_tokens(
    db: DbDep,
    who: Admin,
    revoked: Annotated[bool, Query(description="Include revoked tokens.")] = False,
) -> list[TokenPublic]:
    """Tokens (never the tokens themselves); a tenant's admin sees its tenant's only."""
    rows = await tokens.list_tokens(
        db, tenant=who.tenant, all_tenants=who.tenant is None, include_revoked=revoked
    )
    return [TokenPublic.model_validate(r) for r in rows]


@router.delete("/v1/tokens/{token_id}", responses=_ERRORS)
async def revoke_token(token_id: uuid.UUID, db: DbDep, who: Admin) -> TokenPublic:
    """Revoke a token: its next request is refused. Revoking twice changes nothing."""
    row = await tokens.revoke_token(db, token_id=token_id, by=who)
    log.warning("api token revoked", extra={"token": row.name, "by": who.actor})
    return TokenPublic.model_validate(row)
