"""Bulk inserts (`swarm_orchestrator.db.bulk.insert_rows`): rows stored a batch a
statement, the next batch made while PostgreSQL stores one; a failure while making a batch
leaves the transaction to roll back whole and the session usable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_orchestrator.db.bulk import BATCH, insert_rows
from swarm_orchestrator.db.models import Outbox
from tests.orchestrator.helpers import count_rows

SM = async_sessionmaker[AsyncSession]
ROWS = 2 * BATCH + 7  # three statements


def _rows(count: int, *, fail_at: int | None = None) -> Iterator[dict[str, Any]]:
    for i in range(count):
        if i == fail_at:
            raise ValueError(f"row {i} cannot be made")
        yield {"kind": "xadd", "target": f"stream-{i}", "payload": {"i": i}}


async def test_rows_of_several_batches_are_all_stored_with_their_values(
    sessionmaker: SM,
) -> None:
    async with sessionmaker() as db, db.begin():
        await insert_rows(db, Outbox, _rows(ROWS))
    async with sessionmaker() as db:
        stored = (await db.execute(select(Outbox.target, Outbox.payload).order_by(Outbox.id))).all()
    assert [(target, payload) for target, payload in stored] == [
        (f"stream-{i}", {"i": i}) for i in range(ROWS)
    ]


async def test_a_row_that_cannot_be_made_stores_nothing_and_leaves_the_session_usable(
    sessionmaker: SM,
) -> None:
    async with sessionmaker() as db:
        with pytest.raises(ValueError, match=f"row {BATCH + 3}"):
            async with db.begin():  # the first batch is being stored when the error comes
                await insert_rows(db, Outbox, _rows(ROWS, fail_at=BATCH + 3))
        async with db.begin():
            await insert_rows(db, Outbox, _rows(3))
    assert await count_rows(sessionmaker, Outbox) == 3
