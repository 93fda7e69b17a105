"""The outbox relay: publishes the rows of the transactional outbox
(`swarm_orchestrator.db.outbox`) to Redis and marks them sent: cancel requests and other
messages at once, in order; task messages as their agent streams have room, in the order
`runtime.dispatch` decides (fair shares, then priority).

A crash between publishing and marking re-publishes the row: readers must (and do) treat a
message delivered twice like one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.backoff import Backoff
from swarm_common.messages import utcnow
from swarm_common.streams import ADAPTERS_GROUP, ENVELOPE_FIELD, Keys, ensure_group
from swarm_orchestrator.db.advisory import try_xact_lock
from swarm_orchestrator.db.bulk import any_of
from swarm_orchestrator.db.models import Outbox
from swarm_orchestrator.runtime.dispatch import Dispatcher
from swarm_orchestrator.runtime.failures import log_retry

__all__ = ["Relay"]

log = logging.getLogger(__name__)


@dataclass
class Relay:
    """Publishes outbox rows to Redis. Safe to run in several processes at once: one batch
    at a time holds the relay's advisory lock (so rows go out in order), and its rows are
    locked besides."""

    CANCEL_TTL_S: ClassVar[int] = 7 * 24 * 3600

    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    batch: int = 200
    maxlen: int = 1_000_000
    """Approximate length the task streams are trimmed to."""
    dispatch: Dispatcher = field(default_factory=Dispatcher)
    """Which held task messages go out (`runtime.dispatch`)."""
    _groups: set[str] = field(default_factory=set, init=False)

    async def publish_batch(self) -> int:
        """Publish up to one batch of unsent rows, and the held task messages whose streams
        have room; return how many were published."""
        published, _ = await self._pass()
        return published

    async def _pass(self) -> tuple[int, bool]:
        """`publish_batch`; and whether a batch limit cut it short (more may be waiting)."""
        async with self.sessionmaker() as db, db.begin():
            if not await try_xact_lock(db, f"relay:{self.keys.prefix}"):
                return 0, False  # another replica publishes
            unheld, dispatched = await self._unheld(db), await self._dispatched(db)
            rows = [*unheld, *dispatched]
            if not rows:
                return 0, False
            for stream in {r.target for r in rows if r.kind == "xadd"} - self._groups:
                await ensure_group(self.redis, stream, ADAPTERS_GROUP)
                self._groups.add(stream)
            pipe = self.redis.pipeline(transaction=False)
            for row in rows:
                self._stage(pipe, row)
            await pipe.execute()
            await db.execute(
                update(Outbox)
                .where(any_of(Outbox.id, (r.id for r in rows)))
                .values(
                    sent_at=utcnow(),
                    publish_count=Outbox.publish_count + 1,
                    outstanding=Outbox.task_id.is_not(None),  # until its attempt starts
                )
            )
            return len(rows), max(len(unheld), len(dispatched)) >= self.batch

    async def _unheld(self, db: AsyncSession) -> Sequence[Outbox]:
        """Up to a batch of the rows that go out at once (all but task messages), in order."""
        return (
            await db.scalars(
                select(Outbox)
                .where(Outbox.sent_at.is_(None), Outbox.task_id.is_(None))
                .order_by(Outbox.id)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            )
        ).all()

    async def _dispatched(self, db: AsyncSession) -> list[Outbox]:
        """The held task messages that go out now, in the dispatcher's order."""
        ids = await self.dispatch.take(db, self.keys, limit=self.batch)
        if not ids:
            return []
        found = await db.scalars(
            select(Outbox)
            .where(any_of(Outbox.id, ids), Outbox.sent_at.is_(None))
            .with_for_update(skip_locked=True)
        )
        by_id = {row.id: row for row in found}
        return [by_id[i] for i in ids if i in by_id]

    def _stage(self, pipe: Pipeline, row: Outbox) -> None:
        if row.kind == "xadd":
            fields = {ENVELOPE_FIELD: row.payload[ENVELOPE_FIELD].encode()}
            pipe.xadd(row.target, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        else:
            request = row.payload["request"]
            pipe.set(row.target, request.get("reason", "cancelled"), ex=self.CANCEL_TTL_S)
            pipe.publish(row.payload["channel"], f"{request['task_id']}:{request['attempt']}")

    async def purge_sent(self, older_than_s: float) -> int:
        async with self.sessionmaker() as db, db.begin():
            result = await db.execute(
                delete(Outbox).where(
                    Outbox.sent_at < utcnow() - timedelta(seconds=older_than_s),
                    ~Outbox.outstanding,  # still counted against its stream's room
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def forget_groups(self) -> None:
        """Re-check consumer groups before the next publish (after Redis lost its data)."""
        self._groups.clear()

    async def run(
        self, *, stop: asyncio.Event, wake: asyncio.Event, poll_s: float, retention_s: float
    ) -> None:
        """Publish until `stop` is set; `wake` shortens the wait after a commit. A pass
        that a batch limit cut short is followed by the next at once; what a commit adds
        meanwhile sets `wake` (cleared before the pass reads), so nothing waits a poll."""
        backoff = Backoff(base_s=2 * poll_s, cap_s=10.0)
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            wait = poll_s
            try:
                wake.clear()
                _, full = await self._pass()
                if loop.time() - last_purge > 60:
                    last_purge = loop.time()
                    await self.purge_sent(retention_s)
                backoff.succeeded()
                if full:
                    continue  # at once: more rows may be waiting
            except Exception as exc:
                if isinstance(exc, RedisError | OSError):
                    self.forget_groups()
                wait = backoff.failed()
                log_retry(log, "outbox relay", exc, wait)
            await _wait_any(stop, wake, wait)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
