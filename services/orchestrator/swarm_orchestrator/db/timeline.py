"""The session timeline: one row per transition or control action, in order.

Every state change of a task writes an entry here in the same transaction, so the timeline
is a complete, replayable history, and the source of the SSE stream.

Readers take entries in stream order, `(tx, id)`, `tx` being the id of the transaction that
wrote the entry, and only *settled* ones: written by a transaction older than every
transaction still running (`pg_snapshot_xmin`). Row ids come from a sequence when a row is
written, not when it commits, so a reader going by id alone could pass entry 7 while entry
6 is still uncommitted, and never see 6. Settled entries are final: no transaction can
commit one before them any more. So "everything after entry N" is exact, and a client that
reconnects with `Last-Event-ID: N` gets each entry exactly once. The price: an entry shows
once the oldest write transaction running at its commit has ended (milliseconds here; the
longest are merges, which hold a session's lock while git merges).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnClause

from swarm_orchestrator.db.bulk import any_of, insert_rows
from swarm_orchestrator.db.models import Event

__all__ = [
    "START",
    "Batch",
    "batched",
    "Cursor",
    "cursor_after",
    "forget",
    "last_settled",
    "look_up",
    "page",
    "read",
    "record",
    "record_many",
    "seen",
    "tail",
    "write_pending",
]

Cursor = tuple[int, int]
"""A position in stream order: (transaction id, entry id) of the last entry read."""
START: Cursor = (0, 0)

_TX: ColumnClause[Any] = literal_column("events.tx")
_TX_INT: ColumnClause[int] = literal_column("events.tx::text::bigint")
_SETTLED: ColumnClause[bool] = literal_column("events.tx < pg_snapshot_xmin(pg_current_snapshot())")
_BEYOND = text("(events.tx, events.id) > (CAST(CAST(:ctx AS text) AS xid8), :cid)")


@dataclass(frozen=True)
class Batch:
    events: list[Event]
    cursor: Cursor
    """Where the next read starts."""
    held_back: bool
    """Committed entries wait for an older transaction to end: read again soon."""


def record(
    db: AsyncSession,
    *,
    session_id: uuid.UUID,
    type: str,
    task_id: uuid.UUID | None = None,
    attempt: int | None = None,
    data: dict[str, Any] | None = None,
    actor: str = "system",
    source_id: str | None = None,
) -> None:
    """Write an entry in the caller's transaction (inside `batched`: with the block's
    others, in order, when it ends)."""
    known = _known(db)
    if known is not None and source_id is not None:
        known.seen.add(source_id)
    entry = {
        "session_id": session_id,
        "task_id": task_id,
        "attempt": attempt,
        "type": type,
        "actor": actor,
        "data": data or {},
        "source_id": source_id,
    }
    pending: list[dict[str, Any]] | None = db.info.get(_PENDING)
    if pending is not None:
        pending.append(entry)
    else:
        db.add(Event(**entry))


async def record_many(db: AsyncSession, rows: Iterable[dict[str, Any]]) -> None:
    """Bulk insert for large graphs; each row holds `session_id`, `type` and optionally
    `task_id`, `attempt`, `data`, `actor`. After what `batched` holds, in order."""
    await write_pending(db)
    values = (
        {"actor": "system", "data": {}, "task_id": None, "attempt": None, **row} for row in rows
    )
    await insert_rows(db, Event, values)


_PENDING = "timeline.pending"


@contextlib.asynccontextmanager
async def batched(db: AsyncSession) -> AsyncIterator[None]:
    """Entries recorded inside the block are kept as rows and written together when it
    ends, in the order recorded, with one bulk insert (`db.bulk`): a run of reports records
    hundreds, and an ORM object each costs the flush several times as much. What reads or
    writes entries meanwhile calls `write_pending` first (`record_many` does). A block that
    raises writes nothing (its transaction is rolled back)."""
    db.info[_PENDING] = []
    try:
        yield
        await write_pending(db)
    finally:
        db.info.pop(_PENDING, None)


async def write_pending(db: AsyncSession) -> None:
    """Write the entries `batched` holds so far (none outside it)."""
    pending: list[dict[str, Any]] | None = db.info.get(_PENDING)
    if pending:
        db.info[_PENDING] = []
        await insert_rows(db, Event, pending)


async def last_settled(db: AsyncSession, *, session_id: uuid.UUID) -> int | None:
    """The id of the session's newest settled entry: a client that reads the session's
    state now and then streams after this id misses nothing and repeats little."""
    stmt = (
        select(Event.id)
        .where(Event.session_id == session_id, _SETTLED)
        .order_by(_TX.desc(), Event.id.desc())
        .limit(1)
    )
    found: int | None = await db.scalar(stmt)
    return found


async def tail(db: AsyncSession) -> Cursor:
    """The cursor just past the newest settled entry of every session: a reader of them all
    that starts here reads only what settles from now on."""
    stmt = select(_TX_INT, Event.id).where(_SETTLED).order_by(_TX.desc(), Event.id.desc()).limit(1)
    row = (await db.execute(stmt)).first()
    return START if row is None else (int(row[0]), int(row[1]))


async def cursor_after(db: AsyncSession, event_id: int) -> tuple[Cursor, int]:
    """The cursor just past entry `event_id`, and the smallest id still to read (the id
    itself when no such entry exists, as after a typo: entries with larger ids follow)."""
    if event_id <= 0:
        return START, 0
    tx = await db.scalar(select(_TX_INT).where(Event.id == event_id))
    if tx is None:
        return START, event_id
    return (int(tx), event_id), 0


async def read(
    db: AsyncSession,
    *,
    after: Cursor = START,
    session_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
    min_id: int = 0,
    limit: int = 1000,
) -> Batch:
    """Settled entries of a session or a task past `after`, in stream order."""
    stmt = (
        select(Event, _TX_INT, _SETTLED)
        .where(_BEYOND.bindparams(ctx=str(after[0]), cid=after[1]))
        .order_by(_TX, Event.id)
        .limit(limit)
    )
    if session_id is not None:
        stmt = stmt.where(Event.session_id == session_id)
    if task_id is not None:
        stmt = stmt.where(Event.task_id == task_id)
    if min_id:
        stmt = stmt.where(Event.id > min_id)
    events: list[Event] = []
    cursor = after
    held_back = False
    for event, tx, settled in (await db.execute(stmt)).all():
        if not settled:  # and none after it is either: they are in tx order
            held_back = True
            break
        events.append(event)
        cursor = (int(tx), event.id)
    return Batch(events=events, cursor=cursor, held_back=held_back)


async def page(
    db: AsyncSession,
    *,
    session_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
    after: int = 0,
    limit: int = 1000,
) -> list[Event]:
    """Settled entries of a session or a task after entry `after`, in stream order."""
    cursor, min_id = await cursor_after(db, after)
    batch = await read(
        db, after=cursor, session_id=session_id, task_id=task_id, min_id=min_id, limit=limit
    )
    return batch.events


async def seen(db: AsyncSession, source_id: str) -> bool:
    """Whether a message with this envelope id was already applied."""
    known = _known(db)
    if known is not None and source_id in known.asked:
        return source_id in known.seen
    await write_pending(db)
    return bool(await db.scalar(select(exists().where(Event.source_id == source_id))))


@dataclass
class _Known:
    asked: set[str]
    """The envelope ids `look_up` asked about."""
    seen: set[str]
    """Those of them applied before, or recorded since in this transaction."""


_KNOWN = "timeline.known"


def _known(db: AsyncSession) -> _Known | None:
    known: _Known | None = db.info.get(_KNOWN)
    return known


async def look_up(db: AsyncSession, source_ids: Collection[str]) -> None:
    """Ask once which of many envelope ids were applied before, so that `seen` answers them
    from memory for the rest of the transaction (entries recorded meanwhile included). The
    caller's session ends with the transaction (`forget`)."""
    ids = list(set(source_ids))
    found = await db.scalars(select(Event.source_id).where(any_of(Event.source_id, ids)))
    known = db.info.setdefault(_KNOWN, _Known(asked=set(), seen=set()))
    known.asked.update(ids)
    known.seen.update(s for s in found if s is not None)


def forget(db: AsyncSession) -> None:
    db.info.pop(_KNOWN, None)
