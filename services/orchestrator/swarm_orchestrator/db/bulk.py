"""Large inserts in batches. A graph of thousands of tasks and tens of thousands of edges is
stored in statements of `BATCH` rows: SQLAlchemy prepares each in the event loop's thread,
so one huge statement would hold every other request for seconds, and a batch holds them
for some milliseconds. Plain Core inserts (the table's, not the ORM's bulk insert, which
spends several times as long on each row); the columns' defaults apply as usual."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_orchestrator.db.models import Base

__all__ = ["BATCH", "insert_rows"]

BATCH = 500


async def insert_rows(db: AsyncSession, model: type[Base], rows: Iterable[dict[str, Any]]) -> None:
    """Insert `rows` (consumed lazily, a batch at a time) into `model`'s table."""
    table = cast(Table, model.__table__)
    it = iter(rows)
    while batch := list(islice(it, BATCH)):
        await db.execute(insert(table), batch)
