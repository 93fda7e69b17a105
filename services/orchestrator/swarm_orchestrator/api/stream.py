"""Server-Sent Events of a session's (or a task's) timeline.

`GET /v1/sessions/{id}/events` and `GET /v1/tasks/{id}/events` answer with a stream when the
client accepts `text/event-stream`. Each timeline entry is one event: `id:` is the entry's
id, `data:` its JSON (`EventPublic`). A client that reconnects with `Last-Event-ID: N` (or
`?after=N`) gets every entry after N exactly once, in the timeline's stream order (see
`swarm_orchestrator.db.timeline`), then new ones as they commit.

The stream holds no database connection while it waits: PostgreSQL's notice wakes it (see
`swarm_orchestrator.api.live`), or a poll when no listener is up. It ends when the client goes,
when the server stops, or when the caller's token is revoked or expires (checked every
`SWARM_STREAM_TOKEN_CHECK_S`); the client then reconnects, or stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Query
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse, ServerSentEvent

from swarm_orchestrator.access import tokens
from swarm_orchestrator.access.tokens import Principal
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.api.schemas import MAX_INT, EventPublic
from swarm_orchestrator.db import timeline
from swarm_orchestrator.runtime.failures import is_transient

__all__ = ["SSE_RESPONSE", "EventsDep", "EventsQuery", "timeline_answer"]

log = logging.getLogger(__name__)

BATCH = 500
PING_S = 15
SETTLE_POLL_S = 0.05
"""Re-read this soon when committed entries wait for an older transaction."""
QUIET_POLL_S = 5.0
"""Re-read this often anyway while the listener is up (a safety net, not the way news
arrives)."""
BLIND_POLL_S = 0.5
"""Re-read this often while no listener is up."""
RETRY_MS = 2000
"""The reconnection delay suggested to clients."""

SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The timeline entries, as JSON, or as Server-Sent Events when the "
        "request accepts `text/event-stream`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@dataclass(frozen=True)
class EventsQuery:
    """Which entries a timeline request asks for, and how it wants them."""

    after: int
    limit: int
    accept: str | None
    last_event_id: int | None

    @property
    def start(self) -> int:
        return max(self.after, self.last_event_id or 0)

    @property
    def stream(self) -> bool:
        return "text/event-stream" in (self.accept or "")


def _events_query(
    after: Annotated[int, Query(ge=0, le=MAX_INT, description="Only entries after this one.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    last_event_id: Annotated[
        int | None,
        Header(ge=0, le=MAX_INT, description="Resume a stream after this entry (SSE)."),
    ] = None,
) -> EventsQuery:
    return EventsQuery(after=after, limit=limit, accept=accept, last_event_id=last_event_id)


EventsDep = Annotated[EventsQuery, Depends(_events_query)]


async def timeline_answer(
    db: AsyncSession,
    state: AppState,
    query: EventsQuery,
    *,
    who: Principal,
    session_id: uuid.UUID,
    task_id: uuid.UUID | None = None,
) -> Any:
    """A page of settled entries as JSON, or the Server-Sent Events stream from there."""
    if not query.stream:
        rows = await timeline.page(
            db,
            session_id=None if task_id else session_id,
            task_id=task_id,
            after=query.start,
            limit=query.limit,
        )
        return [EventPublic.model_validate(r) for r in rows]
    cursor, min_id = await timeline.cursor_after(db, query.start)
    await db.close()  # the stream must not hold a connection while it waits
    subject = _Subject(
        state=state, session_id=session_id, task_id=task_id, cursor=cursor, min_id=min_id, who=who
    )
    return EventSourceResponse(
        _entries(subject), ping=PING_S, send_timeout=30, headers={"Cache-Control": "no-store"}
    )


@dataclass(frozen=True)
class _Subject:
    """What one stream follows, for whom, and from where."""

    state: AppState
    session_id: uuid.UUID
    task_id: uuid.UUID | None
    cursor: timeline.Cursor
    min_id: int
    who: Principal


async def _entries(subject: _Subject) -> AsyncIterator[ServerSentEvent]:
    state, session_id, task_id = subject.state, subject.session_id, subject.task_id
    cursor, min_id, who = subject.cursor, subject.min_id, subject.who
    watch = state.timeline_watch
    every = state.settings.stream_token_check_s
    next_check = time.monotonic() + every
    yield ServerSentEvent(comment="stream open", retry=RETRY_MS)
    with watch.watch(session_id) as wake:
        while True:
            wake.clear()
            try:
                async with state.sessionmaker() as db:
                    batch = await timeline.read(
                        db,
                        after=cursor,
                        session_id=session_id,
                        task_id=task_id,
                        min_id=min_id,
                        limit=BATCH,
                    )
                    if time.monotonic() >= next_check:
                        next_check = time.monotonic() + every
                        if not await tokens.still_valid(db, who):
                            log.info("event stream closed: token no longer valid")
                            return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # The database is away: end the stream; the client reconnects with the
                # last id it saw, and nothing is lost.
                log.warning("event stream closed: database unavailable", extra={"error": repr(exc)})
                return
            for event in batch.events:
                body = EventPublic.model_validate(event).model_dump_json()
                yield ServerSentEvent(data=body, id=str(event.id))
            cursor = batch.cursor
            if len(batch.events) == BATCH:
                continue
            if batch.held_back:
                timeout = SETTLE_POLL_S
            else:
                timeout = QUIET_POLL_S if watch.listening else BLIND_POLL_S
                timeout = min(timeout, max(0.0, next_check - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=timeout)
