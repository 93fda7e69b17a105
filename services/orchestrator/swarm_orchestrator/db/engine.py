"""One async engine per process and the session factory built on it; the engine's pool
checks a connection that sat idle before handing it out (`PING_IDLE_S`)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["PING_IDLE_S", "make_engine", "make_sessionmaker"]

PING_IDLE_S = 1.0
"""A pooled connection idle longer than this is pinged before it is handed out (a round
trip), and replaced, with every older one, when the ping fails (the server restarted, say).
One used more recently goes out unpinged, as HikariCP's `aliveBypassWindowMs` does: SQLAlchemy's
`pool_pre_ping` pinged every checkout, three round trips (`BEGIN`, `;`, `ROLLBACK`) for each
of the ten or so transactions a task's path opens, a tenth of the orchestrator's work on a
graph of short tasks. Should the server go away within that second, the first use of such a
connection fails as any query would then (a 503 answered, a loop backing off), and the pool
is renewed."""

_CHECKED_IN = "swarm.checked_in_at"


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": "swarm-orchestrator"}, "timeout": 10},
    )
    event.listen(engine.sync_engine, "checkout", _ping_when_idle)
    event.listen(engine.sync_engine, "checkin", _note_checkin)
    return engine


def _ping_when_idle(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
    """Ping a connection idle for `PING_IDLE_S` (a new one has not been checked in yet: it
    was just made); a failure makes the pool replace it and every older one."""
    checked_in = record.info.get(_CHECKED_IN)
    if checked_in is None or time.monotonic() - checked_in <= PING_IDLE_S:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:
        raise exc.InvalidatePoolError(f"idle connection failed its ping: {error!r}") from error


def _note_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_CHECKED_IN] = time.monotonic()


def make_sessionmaker(
    engine: AsyncEngine, *, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """`info` goes into every session's `info` (the routing policy, `graph.routing`; the price
    table, `graph.pricing`)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=info)
