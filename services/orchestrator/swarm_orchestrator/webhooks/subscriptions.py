"""Webhook subscriptions: create, list, read, remove, test; and their deliveries.

Who sees what is the sessions' rule: a webhook belongs to a tenant (its creator's, or for a
webhook of one session that session's), and a token sees the webhooks of its tenant (a
token without one sees them all). Another tenant's webhook is not found. The secret is
returned once, by `create`; nothing else answers or logs it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import utcnow
from swarm_orchestrator.access.tokens import Principal
from swarm_orchestrator.db.models import Session, Webhook, WebhookDelivery
from swarm_orchestrator.errors import Conflict, NotFound
from swarm_orchestrator.graph import sessions
from swarm_orchestrator.webhooks import events, fanout, signing, targets

__all__ = [
    "MAX_PER_TENANT",
    "create",
    "delete",
    "deliveries",
    "get",
    "list_webhooks",
    "test",
]

log = logging.getLogger(__name__)

MAX_PER_TENANT = 100
"""Webhooks one tenant (or the tenant-less tokens together) may have."""


async def create(
    db: AsyncSession,
    *,
    who: Principal,
    url: str,
    names: Sequence[str],
    fmt: str,
    secret: str | None,
    session_id: uuid.UUID | None,
    allow_private: bool,
) -> tuple[Webhook, str]:
    """A new webhook and its secret (the one given, or a new one). `url` must pass
    `targets.check_url`; a session webhook is for a session the caller sees."""
    url = targets.check_url(url, allow_private=allow_private)
    tenant = who.tenant
    if session_id is not None:
        session: Session = await sessions.get_session(db, session_id, seen_by=who)
        tenant = session.tenant
    count = await db.scalar(
        select(func.count())
        .select_from(Webhook)
        .where(func.coalesce(Webhook.tenant, "") == (tenant or ""))
    )
    if (count or 0) >= MAX_PER_TENANT:
        raise Conflict(
            f"a tenant has at most {MAX_PER_TENANT} webhooks; remove one first",
            code="too_many_webhooks",
        )
    secret = secret or signing.new_secret()
    hook = Webhook(
        tenant=tenant,
        session_id=session_id,
        url=url,
        events=sorted(set(names)),
        format=fmt,
        secret=secret,
        created_by=who.actor,
    )
    db.add(hook)
    await fanout.ensure_cursor(db)  # it gets what is written from now on
    await db.commit()
    log.info(
        "webhook created",
        extra={
            "webhook_id": str(hook.id),
            "tenant": tenant,
            "session_id": str(session_id) if session_id else None,
            "host": urlsplit(url).hostname,  # not the URL: Slack's holds a token
            "actor": who.actor,
        },
    )
    return hook, secret


async def list_webhooks(
    db: AsyncSession, *, who: Principal, session_id: uuid.UUID | None = None
) -> Sequence[Webhook]:
    stmt = select(Webhook).order_by(Webhook.created_at, Webhook.id)
    if who.tenant is not None:
        stmt = stmt.where(Webhook.tenant == who.tenant)
    if session_id is not None:
        stmt = stmt.where(Webhook.session_id == session_id)
    return (await db.scalars(stmt)).all()


async def get(db: AsyncSession, webhook_id: uuid.UUID, *, who: Principal) -> Webhook:
    hook = await db.get(Webhook, webhook_id)
    if hook is None or not who.can_see(hook.tenant):
        raise NotFound(f"webhook {webhook_id} not found", code="webhook_not_found")
    return hook


async def delete(db: AsyncSession, webhook_id: uuid.UUID, *, who: Principal) -> Webhook:
    """Remove a webhook with its deliveries (pending ones are not sent)."""
    hook = await get(db, webhook_id, who=who)
    await db.delete(hook)
    await db.commit()
    log.info("webhook removed", extra={"webhook_id": str(hook.id), "actor": who.actor})
    return hook


async def deliveries(
    db: AsyncSession,
    webhook_id: uuid.UUID,
    *,
    who: Principal,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[WebhookDelivery]:
    """A webhook's deliveries, newest first."""
    await get(db, webhook_id, who=who)
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
        .offset(offset)
    )
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    return (await db.scalars(stmt)).all()


async def test(db: AsyncSession, webhook_id: uuid.UUID, *, who: Principal) -> WebhookDelivery:
    """A `webhook.test` delivery, sent as any other (signed, retried, recorded)."""
    hook = await get(db, webhook_id, who=who)
    delivery_id = uuid.uuid4()
    delivery = WebhookDelivery(
        id=delivery_id,
        webhook_id=hook.id,
        type=events.TEST_EVENT,
        payload=events.payload(
            delivery_id=delivery_id,
            type=events.TEST_EVENT,
            at=utcnow(),
            session_id=hook.session_id,
            tenant=hook.tenant,
            data={"requested_by": who.actor},
        ),
        status="pending",
        attempts=0,
    )
    db.add(delivery)
    await db.commit()
    await db.refresh(delivery)
    return delivery
