"""The orchestrator's connection pool: a connection that sat idle is checked before use, so
one the server dropped meanwhile is replaced instead of failing the first query."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from swarm_orchestrator.db import engine as engine_module
from swarm_orchestrator.db.engine import make_engine
from tests.waiting import wait_until_async


async def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)  # every checkout counts as idle
    engine = make_engine(database_url, pool_size=1)
    other = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            dropped = int(await conn.scalar(text("SELECT pg_backend_pid()")))
        async with other.connect() as conn:
            assert await conn.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": dropped})

        async def gone() -> bool:
            async with other.connect() as conn:
                found = await conn.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": dropped}
                )
            return bool(found == 0)

        await wait_until_async(gone, timeout_s=10, message="the backend ends")
        async with engine.connect() as conn:  # no error: pinged, found dead, replaced
            now = int(await conn.scalar(text("SELECT pg_backend_pid()")))
        assert now != dropped
    finally:
        await engine.dispose()
        await other.dispose()


@pytest.mark.parametrize(("idle_s", "pings"), [(60.0, 0), (0.0, 1)])
async def test_only_a_connection_idle_past_the_window_is_pinged(
    database_url: str, monkeypatch: pytest.MonkeyPatch, idle_s: float, pings: int
) -> None:
    """Two checkouts in a row: the first gets a new connection (never pinged), the second
    the same one again, pinged only when its idle time passed `PING_IDLE_S`."""
    monkeypatch.setattr(engine_module, "PING_IDLE_S", idle_s)
    seen: list[object] = []
    real = AsyncAdapt_asyncpg_connection.ping

    def counted(self: AsyncAdapt_asyncpg_connection) -> None:
        seen.append(self)
        real(self)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counted)
    engine = make_engine(database_url, pool_size=1)
    try:
        for _ in range(2):
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
    assert len(seen) == pings
