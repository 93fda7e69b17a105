"""From the timeline to deliveries: every settled entry that is a webhook event
(`webhooks.events.notified`) becomes one pending delivery per webhook that wants it.

One pass reads the entries of every session after a stored cursor, in stream order
(`db.timeline.read`: only settled entries, so none is ever passed over), writes the
deliveries and moves the cursor in one transaction, under an advisory lock: with several
orchestrators, one fans out at a time; a pass that dies writes nothing, and the next one
reads the same entries again. A delivery is unique per webhook and entry besides.

A webhook gets the entries written since it was created. The cursor starts at the
timeline's end (when the first webhook is created, or the first pass runs), so an upgrade
does not replay history.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from itertools import islice
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.advisory import try_xact_lock
from swarm_orchestrator.db.models import (
    Event,
    Session,
    Task,
    TimelineCursor,
    Webhook,
    WebhookDelivery,
)
from swarm_orchestrator.webhooks import events

__all__ = ["CURSOR", "ensure_cursor", "fan_out_once"]

log = logging.getLogger(__name__)

CURSOR = "webhooks"
LOCK = "webhook-fanout"
BATCH = 500
"""Timeline entries one pass reads."""
INSERT_BATCH = 1000


async def ensure_cursor(db: AsyncSession) -> timeline.Cursor:
    """The fan-out's cursor; made at the timeline's end when there is none."""
    row = await db.get(TimelineCursor, CURSOR)
    if row is None:
        tx, event_id = await timeline.tail(db)
        await db.execute(
            insert(TimelineCursor)
            .values(name=CURSOR, tx=tx, event_id=event_id)
            .on_conflict_do_nothing()
        )
        row = await db.get(TimelineCursor, CURSOR, populate_existing=True)
        assert row is not None
    return row.tx, row.event_id


async def fan_out_once(
    sessionmaker: async_sessionmaker[AsyncSession], *, batch: int = BATCH
) -> tuple[int, int]:
    """One pass: (timeline entries read, deliveries made)."""
    async with sessionmaker() as db, db.begin():
        if not await try_xact_lock(db, LOCK):
            return 0, 0
        cursor = await ensure_cursor(db)
        end = await timeline.tail(db)  # before the webhooks are read: none misses an entry
        hooks = (await db.scalars(select(Webhook))).all()
        if not hooks:  # nobody listens: skip to the end
            await _move(db, max(end, cursor))
            return 0, 0
        read = await timeline.read(db, after=cursor, limit=batch)
        rows = await _deliveries(db, read.events, hooks)
        for chunk in _chunks(rows, INSERT_BATCH):
            await db.execute(insert(WebhookDelivery).values(chunk).on_conflict_do_nothing())
        await _move(db, read.cursor)
    if rows:
        log.info("webhook deliveries made", extra={"deliveries": len(rows)})
    return len(read.events), len(rows)


async def _move(db: AsyncSession, cursor: timeline.Cursor) -> None:
    row = await db.get(TimelineCursor, CURSOR)
    assert row is not None
    if (row.tx, row.event_id) != cursor:
        row.tx, row.event_id = cursor


async def _deliveries(
    db: AsyncSession, entries: Sequence[Event], hooks: Sequence[Webhook]
) -> list[dict[str, Any]]:
    named = [(e, name) for e in entries if (name := events.notified(e.type, e.data or {}))]
    if not named:
        return []
    sessions = await _sessions(db, {e.session_id for e, _ in named})
    tasks = await _task_keys(db, {e.task_id for e, _ in named if e.task_id is not None})
    rows = []
    for entry, name in named:
        title, tenant = sessions.get(entry.session_id, (None, None))
        for hook in hooks:
            if not _wants(hook, entry, name, tenant):
                continue
            delivery_id = uuid.uuid4()
            body = events.payload(
                delivery_id=delivery_id,
                type=name,
                at=entry.created_at,
                event_id=entry.id,
                session_id=entry.session_id,
                session_title=title,
                tenant=tenant,
                task_id=entry.task_id,
                task_key=tasks.get(entry.task_id) if entry.task_id else None,
                data=entry.data,
            )
            rows.append(
                {
                    "id": delivery_id,
                    "webhook_id": hook.id,
                    "event_id": entry.id,
                    "type": name,
                    "payload": body,
                    "status": "pending",
                    "attempts": 0,
                }
            )
    return rows


def _wants(hook: Webhook, entry: Event, name: str, tenant: str | None) -> bool:
    if name not in hook.events or entry.created_at < hook.created_at:
        return False
    if hook.session_id is not None:
        return entry.session_id == hook.session_id
    return hook.tenant is None or hook.tenant == tenant


async def _sessions(
    db: AsyncSession, ids: set[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str | None]]:
    rows = await db.execute(
        select(Session.id, Session.title, Session.tenant).where(Session.id.in_(ids))
    )
    return {sid: (title, tenant) for sid, title, tenant in rows.all()}


async def _task_keys(db: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await db.execute(select(Task.id, Task.key).where(Task.id.in_(ids)))
    return {row[0]: row[1] for row in rows.all()}


def _chunks(rows: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    it = iter(rows)
    return list(iter(lambda: list(islice(it, size)), []))
