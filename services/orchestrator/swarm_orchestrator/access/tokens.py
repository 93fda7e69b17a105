"""API tokens: roles, tenants, creation, revocation, and resolving a bearer token to the
`Principal` a request acts as.

A token is `swarm_` and 43 URL-safe characters (256 random bits). Only its SHA-256 digest is
stored, so a copy of the database lets no one in; the token is shown once, when created.
Roles are ordered: `viewer` reads, `operator` also submits and controls sessions and tasks,
`admin` also manages tokens and the system mode (drain, stop). A token with a tenant sees
only that tenant's sessions, and its admin manages only that tenant's tokens; the system
mode needs an admin without a tenant.

`SWARM_API_TOKEN`, when set in the orchestrator's environment, is accepted as an admin
token named `bootstrap`, so a deployment can create its first tokens without a database
shell.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import utcnow
from swarm_orchestrator.db.models import ApiToken
from swarm_orchestrator.errors import Conflict, Forbidden, NotFound

__all__ = [
    "BOOTSTRAP_NAME",
    "TOKEN_PREFIX",
    "Forbidden",
    "Principal",
    "Role",
    "budget_subject",
    "check_name",
    "create_token",
    "digest",
    "ensure_local_admin",
    "list_tokens",
    "write_secret_file",
    "new_token",
    "resolve",
    "revoke_token",
    "still_valid",
]

TOKEN_PREFIX = "swarm_"
BOOTSTRAP_NAME = "bootstrap"
LAST_USED_GRANULARITY = timedelta(minutes=1)
"""`last_used_at` is written at most this often per token, not on every request."""

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")
_TOKEN_RE = re.compile(rf"{TOKEN_PREFIX}[A-Za-z0-9_-]{{43}}")


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class Principal:
    """Who a request acts as."""

    name: str
    role: Role
    tenant: str | None = None
    token_id: uuid.UUID | None = None

    @property
    def actor(self) -> str:
        """How the timeline names what this principal did."""
        return f"token:{self.name}"

    def can_see(self, tenant: str | None) -> bool:
        """Whether this principal may see a session of `tenant`."""
        return self.tenant is None or self.tenant == tenant


def check_name(value: str, what: str = "name") -> str:
    """Token names and tenants: 1–100 of letters, digits, `_ . @ -`, starting with a letter
    or digit (they appear in audit entries and logs)."""
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"{what} must be 1 to 100 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    return value


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    db: AsyncSession,
    *,
    name: str,
    role: Role,
    tenant: str | None,
    created_by: str,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Store a new token; returns its row and the token itself (shown once). Commits."""
    if name == BOOTSTRAP_NAME:  # the name of `SWARM_API_TOKEN` in audit entries
        raise Conflict(f"the name {name!r} is reserved", code="token_name_taken")
    token = new_token()
    row = ApiToken(
        id=uuid.uuid4(),
        name=name,
        role=role.value,
        tenant=tenant,
        digest=digest(token),
        prefix=token[: len(TOKEN_PREFIX) + 4],
        created_by=created_by,
        expires_at=expires_at,
    )
    db.add(row)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise Conflict(
            f"an active token named {name!r} already exists"
            + (f" in tenant {tenant!r}" if tenant else ""),
            code="token_name_taken",
        ) from None
    await db.refresh(row)
    return row, token


async def list_tokens(
    db: AsyncSession, *, tenant: str | None, all_tenants: bool, include_revoked: bool
) -> list[ApiToken]:
    stmt = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
    if not all_tenants:
        stmt = stmt.where(ApiToken.tenant == tenant)
    if not include_revoked:
        stmt = stmt.where(ApiToken.revoked_at.is_(None))
    return list((await db.scalars(stmt)).all())


async def revoke_token(db: AsyncSession, *, token_id: uuid.UUID, by: Principal) -> ApiToken:
    """Revoke a token (from the next request on). Revoking a revoked token changes nothing.
    A tenant's admin sees and revokes only its tenant's tokens. Commits."""
    row = await db.get(ApiToken, token_id, with_for_update=True)
    if row is None or not by.can_see(row.tenant):
        raise NotFound(f"token {token_id} not found", code="token_not_found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        row.revoked_by = by.actor
    await db.commit()
    return row


async def resolve(db: AsyncSession, token: str, *, bootstrap: str | None) -> Principal | None:
    """The principal of a presented token, or None when it is unknown, revoked or expired."""
    if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
        return Principal(name=BOOTSTRAP_NAME, role=Role.ADMIN)
    if not _TOKEN_RE.fullmatch(token):
        return None
    row = await db.scalar(select(ApiToken).where(ApiToken.digest == digest(token)))
    now = utcnow()
    if row is None or not _valid(row, now):
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_GRANULARITY:
        await db.execute(
            update(ApiToken)
            .where(ApiToken.id == row.id)
            .values(last_used_at=func.greatest(func.coalesce(ApiToken.last_used_at, now), now))
        )
        await db.commit()
    return Principal(name=row.name, role=Role(row.role), tenant=row.tenant, token_id=row.id)


def budget_subject(token: str, *, bootstrap: str | None) -> str | None:
    """The rate-limit subject of a presented token, known without the database: a Swarm
    token by its digest (as stored; of 256 random bits, so it gives nothing away), the
    bootstrap token by its name (never a hash of it: it may be guessable); None for
    anything else, which `resolve` refuses without a lookup."""
    if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
        return f"token:{BOOTSTRAP_NAME}"
    if _TOKEN_RE.fullmatch(token):
        return f"token:{digest(token)}"
    return None


async def still_valid(db: AsyncSession, principal: Principal) -> bool:
    """Whether the token behind `principal` is still neither revoked nor expired (for
    long requests, such as an event stream, that outlive one check). The bootstrap token
    lives as long as the server's configuration."""
    if principal.token_id is None:
        return True
    row = await db.get(ApiToken, principal.token_id, populate_existing=True)
    return row is not None and _valid(row, utcnow())


def _valid(row: ApiToken, now: datetime) -> bool:
    """Neither revoked nor expired."""
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > now)


LOCAL_ADMIN_NAME = "local-admin"


async def ensure_local_admin(db: AsyncSession, kept: str, *, created_by: str) -> str | None:
    """`kept` (the token `swarm up` keeps for the local user) if it is a valid admin token;
    otherwise a new admin token named `local-admin` (revoking an older one, whose token
    is lost) is made and returned. Commits."""
    row = None
    if _TOKEN_RE.fullmatch(kept):
        row = await db.scalar(select(ApiToken).where(ApiToken.digest == digest(kept)))
    if row is not None and row.role == Role.ADMIN and _valid(row, utcnow()):
        return None
    await db.execute(
        update(ApiToken)
        .where(
            ApiToken.name == LOCAL_ADMIN_NAME,
            ApiToken.tenant.is_(None),
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow(), revoked_by=created_by)
    )
    _, token = await create_token(
        db, name=LOCAL_ADMIN_NAME, role=Role.ADMIN, tenant=None, created_by=created_by
    )
    return token


def write_secret_file(path: Path, value: str) -> None:
    """Write `value` to `path`, readable by its owner only (0600 from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")
    os.chmod(path, 0o600)
