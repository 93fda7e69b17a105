"""The event consumer: reads `swarm:events` in group `orchestrator` and applies each event.

An entry is acknowledged only after its effect is committed (or it was dead-lettered).
Entries that cannot be decoded, name an unknown task, or make `apply_event` raise a
non-transient error go to the dead-letter stream. A transient failure (database or Redis
unreachable) leaves the entry pending; the consumer backs off and re-reads its own pending
entries before new ones. Entries left pending by an orchestrator that vanished are taken
over with `XAUTOCLAIM` once idle long enough; one delivered more than `max_deliveries`
times (it kept killing its consumer) is dead-lettered instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.backoff import Backoff, sleep
from swarm_common.messages import TaskCancelled, TaskFailed, TaskSucceeded
from swarm_common.streams import ORCHESTRATOR_GROUP, DecodeError, Keys, dead_letter, decode
from swarm_common.streams import ensure_group as _ensure_group
from swarm_orchestrator.graph.reports import Outcome, UnknownTask, apply_event
from swarm_orchestrator.graph.retry import RetryPolicy
from swarm_orchestrator.runtime.failures import is_transient, log_retry
from swarm_orchestrator.runtime.reaper import declare_lost

__all__ = ["EventConsumer"]

log = logging.getLogger(__name__)


class EventConsumer:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        keys: Keys,
        consumer: str,
        batch: int = 100,
        claim_idle_ms: int = 60_000,
        max_deliveries: int = 10,
        policy: RetryPolicy | None = None,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._keys = keys
        self._consumer = consumer
        self._batch = batch
        self._claim_idle_ms = claim_idle_ms
        self._max_deliveries = max_deliveries
        self._policy = policy or RetryPolicy()
        self._on_commit = on_commit
        self._recover = True
        self.counts: dict[str, int] = {}

    async def setup(self) -> None:
        await _ensure_group(self._redis, self._keys.events, ORCHESTRATOR_GROUP)

    async def process(self, *, block_ms: int | None = None) -> int:
        """Read one batch (own pending entries first) and handle it; return how many entries
        were handled. With `block_ms=None` it does not wait: burst mode for tests."""
        if self._recover:
            entries = await self._read("0", block_ms=None)
            if entries:
                return await self._handle_all(entries)
            self._recover = False
        return await self._handle_all(await self._read(">", block_ms=block_ms))

    async def _read(self, start: str, *, block_ms: int | None) -> list[Any]:
        try:
            reply: Any = await self._redis.xreadgroup(
                ORCHESTRATOR_GROUP,
                self._consumer,
                {self._keys.events: start},
                count=self._batch,
                block=block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.setup()
            return []
        return list(reply[0][1]) if reply else []

    async def claim_stale(self) -> int:
        """Take over entries another (vanished) orchestrator left pending."""
        reply = await self._redis.xautoclaim(
            self._keys.events,
            ORCHESTRATOR_GROUP,
            self._consumer,
            min_idle_time=self._claim_idle_ms,
            start_id="0-0",
            count=self._batch,
        )
        entries: list[Any] = reply[1] if reply else []
        handled = 0
        for entry_id, fields in entries:
            pending: Any = await self._redis.xpending_range(
                self._keys.events, ORCHESTRATOR_GROUP, min=entry_id, max=entry_id, count=1
            )
            deliveries = int(pending[0]["times_delivered"]) if pending else 1
            if fields and deliveries > self._max_deliveries:
                await self._dead(entry_id, fields, f"delivered {deliveries} times", run_again=True)
                handled += 1
            else:
                handled += await self._handle_all([(entry_id, fields)])
        return handled

    async def _handle_all(self, entries: list[Any]) -> int:
        handled = 0
        for entry_id, fields in entries:
            try:
                await self._handle(entry_id, fields)
            except BaseException:
                self._recover = True
                raise
            handled += 1
        return handled

    async def _handle(self, entry_id: bytes, fields: dict[bytes, bytes] | None) -> None:
        stream = self._keys.events
        if not fields:  # trimmed away while pending: nothing left to apply
            await self._redis.xack(stream, ORCHESTRATOR_GROUP, entry_id)
            return
        try:
            envelope = decode(fields)
        except DecodeError as exc:
            await self._dead(entry_id, fields, f"undecodable: {exc}")
            return
        try:
            async with self._sessionmaker() as db, db.begin():
                outcome = await apply_event(db, envelope, keys=self._keys, policy=self._policy)
        except UnknownTask as exc:
            await self._dead(entry_id, fields, f"unknown task: {exc}")
            return
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception(
                "event could not be applied",
                extra={"entry_id": entry_id.decode(), "type": envelope.type},
            )
            await self._dead(
                entry_id, fields, f"apply failed: {type(exc).__name__}: {exc}", run_again=True
            )
            return
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if outcome == Outcome.APPLIED:
            self._on_commit()
        await self._redis.xack(stream, ORCHESTRATOR_GROUP, entry_id)

    async def _dead(
        self,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        reason: str,
        *,
        run_again: bool = False,
    ) -> None:
        """Move an entry to the dead-letter stream. With `run_again`, an attempt whose
        result it reported is declared lost, so its task runs again rather than wait for a
        report that will never be applied."""
        if run_again:
            await self._lose_reported_attempt(fields, reason)
        await dead_letter(
            self._redis,
            self._keys,
            stream=self._keys.events,
            entry_id=entry_id,
            fields=fields,
            reason=reason,
            group=ORCHESTRATOR_GROUP,
        )
        await self._redis.xack(self._keys.events, ORCHESTRATOR_GROUP, entry_id)
        self.counts["dead"] = self.counts.get("dead", 0) + 1

    async def _lose_reported_attempt(self, fields: dict[bytes, bytes], reason: str) -> None:
        try:
            message = decode(fields).message
        except DecodeError:
            return
        if not isinstance(message, TaskSucceeded | TaskFailed | TaskCancelled):
            return
        async with self._sessionmaker() as db, db.begin():
            await declare_lost(
                db,
                task_id=message.task_id,
                attempt=message.attempt,
                reason=f"its report could not be applied ({reason[:200]})",
                keys=self._keys,
                policy=self._policy,
                worker=message.worker,
            )
        self._on_commit()

    async def run(self, *, stop: asyncio.Event, block_ms: int) -> None:
        """Consume until `stop` is set, backing off while the database or Redis is away."""
        backoff = Backoff(base_s=0.5, cap_s=10.0)
        loop = asyncio.get_running_loop()
        last_claim = loop.time()
        await _retry_setup(self, stop)
        while not stop.is_set():
            try:
                await self.process(block_ms=block_ms)
                if loop.time() - last_claim > self._claim_idle_ms / 2000:
                    last_claim = loop.time()
                    await self.claim_stale()
                backoff.succeeded()
            except Exception as exc:
                delay = backoff.failed()
                log_retry(log, "event consumer", exc, delay)
                await sleep(delay, stop)


async def _retry_setup(consumer: EventConsumer, stop: asyncio.Event) -> None:
    backoff = Backoff(base_s=0.5, cap_s=10.0)
    while not stop.is_set():
        try:
            await consumer.setup()
            return
        except (RedisError, OSError) as exc:
            delay = backoff.failed()
            log.warning(
                "cannot create the events consumer group yet",
                extra={"error": repr(exc), "retry_in_s": delay},
            )
            await sleep(delay, stop)
