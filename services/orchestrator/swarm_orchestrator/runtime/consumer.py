"""The event consumer: reads `swarm:events` in group `orchestrator` and applies each event.

An entry is acknowledged only after its effect is committed (or it was dead-lettered).
Entries that cannot be decoded, name an unknown task, or make `apply_event` raise a
non-transient error go to the dead-letter stream. A transient failure (database or Redis
unreachable) leaves the entry pending; the consumer backs off and re-reads its own pending
entries before new ones. Entries left pending by an orchestrator that vanished are taken
over with `XAUTOCLAIM` once idle long enough; one delivered more than `max_deliveries`
times (it kept killing its consumer) is dead-lettered instead.

An event without a valid proof of origin (`graph.provenance`) is dropped and acknowledged:
`counts["rejected"]` counts them. A dead-lettered result runs its attempt again only when
it is proven, so a forged report that cannot be applied cannot end a running attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import logs
from swarm_common.backoff import Backoff, sleep
from swarm_common.messages import (
    TaskCancelled,
    TaskFailed,
    TaskHeartbeat,
    TaskProgress,
    TaskStarted,
    TaskSucceeded,
)
from swarm_common.streams import (
    ORCHESTRATOR_GROUP,
    DecodeError,
    Envelope,
    Keys,
    dead_letter,
    decode,
)
from swarm_common.streams import ensure_group as _ensure_group
from swarm_orchestrator.graph import provenance
from swarm_orchestrator.graph.reports import Outcome, UnknownTask, apply_event, apply_events
from swarm_orchestrator.graph.retry import RetryPolicy
from swarm_orchestrator.observability import metrics
from swarm_orchestrator.planning.plans import PlanLimits
from swarm_orchestrator.runtime.failures import is_transient, log_retry
from swarm_orchestrator.runtime.reaper import declare_lost

__all__ = ["EventConsumer"]

log = logging.getLogger(__name__)


@dataclass
class EventConsumer:
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    consumer: str
    """This process's name in the consumer group."""
    batch: int = 100
    claim_idle_ms: int = 60_000
    max_deliveries: int = 10
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    plan_limits: PlanLimits = field(default_factory=PlanLimits)
    on_commit: Callable[[], None] = lambda: None
    """Called after an event changed what the loops act on (they wake up): not for a start,
    progress or heartbeat alone (`_QUIET`)."""
    counts: dict[str, int] = field(default_factory=dict, init=False)
    _recover: bool = field(default=True, init=False)

    async def setup(self) -> None:
        await _ensure_group(self.redis, self.keys.events, ORCHESTRATOR_GROUP)

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
            reply: Any = await self.redis.xreadgroup(
                ORCHESTRATOR_GROUP,
                self.consumer,
                {self.keys.events: start},
                count=self.batch,
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
        reply = await self.redis.xautoclaim(
            self.keys.events,
            ORCHESTRATOR_GROUP,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=self.batch,
        )
        entries: list[Any] = reply[1] if reply else []
        metrics.reclaimed(None, stream="events", count=len(entries))
        handled = 0
        for entry_id, fields in entries:
            pending: Any = await self.redis.xpending_range(
                self.keys.events, ORCHESTRATOR_GROUP, min=entry_id, max=entry_id, count=1
            )
            deliveries = int(pending[0]["times_delivered"]) if pending else 1
            if fields and deliveries > self.max_deliveries:
                await self._dead(entry_id, fields, f"delivered {deliveries} times", run_again=True)
                handled += 1
            else:
                handled += await self._handle_all([(entry_id, fields)])
        return handled

    async def _handle_all(self, entries: list[Any]) -> int:
        handled = 0
        for run in _runs(entries):
            if len(run) > 1 and await self._apply_together(run):
                handled += len(run)
                continue
            handled += await self._one_by_one(run)
        return handled

    async def _apply_together(self, run: list[tuple[bytes, dict[bytes, bytes], Envelope]]) -> bool:
        """Apply a run of attempt reports in one transaction (one commit for all of them,
        not one each), sessions in id order so that two replicas applying runs at once
        lock them in the same order. False when any report needs more than applying (one
        that cannot be applied: the run is rolled back and goes one by one, where each
        gets its answer)."""
        ordered = sorted(run, key=lambda item: str(getattr(item[2].message, "session_id", "")))
        try:
            async with self.sessionmaker() as db, db.begin():
                outcomes = await apply_events(
                    db,
                    [envelope for _, _, envelope in ordered],
                    keys=self.keys,
                    policy=self.policy,
                    plan_limits=self.plan_limits,
                )
        except Exception as exc:
            if is_transient(exc):
                self._recover = True
                raise
            log.info(
                "a run of reports goes one by one",
                extra={"entries": len(run), "error": f"{type(exc).__name__}"},
            )
            return False
        woken = False
        for (_, _, envelope), outcome in zip(ordered, outcomes, strict=True):
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            metrics.event_handled(envelope.type, outcome)
            woken = woken or _wakes(envelope, outcome)
        if woken:
            self.on_commit()
        await self.redis.xack(
            self.keys.events, ORCHESTRATOR_GROUP, *[entry_id for entry_id, _, _ in run]
        )
        return True

    async def _one_by_one(self, entries: list[Any]) -> int:
        handled = 0
        for entry_id, fields, *_ in entries:
            try:
                await self._handle(entry_id, fields)
            except BaseException:
                self._recover = True
                raise
            handled += 1
        return handled

    async def _handle(self, entry_id: bytes, fields: dict[bytes, bytes] | None) -> None:
        if not fields:  # trimmed away while pending: nothing left to apply
            await self.redis.xack(self.keys.events, ORCHESTRATOR_GROUP, entry_id)
            return
        try:
            envelope = decode(fields)
        except DecodeError as exc:
            await self._dead(entry_id, fields, f"undecodable: {exc}")
            return
        with logs.bound(**_about(envelope)):
            await self._apply(entry_id, fields, envelope)

    async def _apply(self, entry_id: bytes, fields: dict[bytes, bytes], envelope: Envelope) -> None:
        try:
            async with self.sessionmaker() as db, db.begin():
                outcome = await apply_event(
                    db, envelope, keys=self.keys, policy=self.policy, plan_limits=self.plan_limits
                )
        except UnknownTask as exc:
            await self._dead(entry_id, fields, f"unknown task: {exc}", event_type=envelope.type)
            return
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception(
                "event could not be applied",
                extra={"entry_id": entry_id.decode(), "type": envelope.type},
            )
            await self._dead(
                entry_id,
                fields,
                f"apply failed: {type(exc).__name__}: {exc}",
                run_again=True,
                event_type=envelope.type,
            )
            return
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        metrics.event_handled(envelope.type, outcome)
        if _wakes(envelope, outcome):
            self.on_commit()
        await self.redis.xack(self.keys.events, ORCHESTRATOR_GROUP, entry_id)

    async def _dead(
        self,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        reason: str,
        *,
        run_again: bool = False,
        event_type: str | None = None,
    ) -> None:
        """Move an entry to the dead-letter stream. With `run_again`, an attempt whose
        result it reported is declared lost, so its task runs again rather than wait for a
        report that will never be applied."""
        if run_again:
            await self._lose_reported_attempt(fields, reason)
        await dead_letter(
            self.redis,
            self.keys,
            stream=self.keys.events,
            entry_id=entry_id,
            fields=fields,
            reason=reason,
            group=ORCHESTRATOR_GROUP,
        )
        await self.redis.xack(self.keys.events, ORCHESTRATOR_GROUP, entry_id)
        self.counts["dead"] = self.counts.get("dead", 0) + 1
        metrics.event_handled(event_type, "dead")

    async def _lose_reported_attempt(self, fields: dict[bytes, bytes], reason: str) -> None:
        try:
            envelope = decode(fields)
        except DecodeError:
            return
        message = envelope.message
        if not isinstance(message, TaskSucceeded | TaskFailed | TaskCancelled):
            return
        async with self.sessionmaker() as db, db.begin():
            if not await provenance.is_proven(db, envelope):
                log.warning(
                    "unproven report dead-lettered; its attempt goes on",
                    extra={"task_id": str(message.task_id), "attempt": message.attempt},
                )
                self.counts[Outcome.REJECTED] = self.counts.get(Outcome.REJECTED, 0) + 1
                return
            await declare_lost(
                db,
                task_id=message.task_id,
                attempt=message.attempt,
                reason=f"its report could not be applied ({reason[:200]})",
                keys=self.keys,
                policy=self.policy,
                worker=message.worker,
            )
        self.on_commit()

    async def run(self, *, stop: asyncio.Event, block_ms: int) -> None:
        """Consume until `stop` is set, backing off while the database or Redis is away."""
        backoff = Backoff(base_s=0.5, cap_s=10.0)
        loop = asyncio.get_running_loop()
        last_claim = loop.time()
        await _retry_setup(self, stop)
        while not stop.is_set():
            try:
                await self.process(block_ms=block_ms)
                if loop.time() - last_claim > self.claim_idle_ms / 2000:
                    last_claim = loop.time()
                    await self.claim_stale()
                backoff.succeeded()
            except Exception as exc:
                delay = backoff.failed()
                log_retry(log, "event consumer", exc, delay)
                await sleep(delay, stop)


_TOGETHER = (TaskStarted, TaskSucceeded, TaskFailed, TaskCancelled, TaskProgress)
"""The reports applied in runs, one transaction for many (`EventConsumer._apply_together`):
each locks only its own session, task and attempt."""


_QUIET = (TaskStarted, TaskProgress, TaskHeartbeat)
"""Reports whose effect no loop acts on: a start moves a task from the stream's messages out
to its running ones (the relay's room is the same: `runtime.dispatch`), and queues, ends and
merges nothing; progress and heartbeats only stamp."""


def _wakes(envelope: Envelope, outcome: Outcome) -> bool:
    """Whether an applied report wakes the relay and the merge queue (`on_commit`)."""
    return outcome == Outcome.APPLIED and not isinstance(envelope.message, _QUIET)


def _runs(entries: list[Any]) -> list[list[Any]]:
    """The entries in stream order, cut into runs: consecutive attempt reports
    (`_TOGETHER`, decoded: `(id, fields, envelope)`) together, every other entry alone."""
    runs: list[list[Any]] = []
    together: list[Any] = []
    for entry_id, fields in entries:
        envelope = None
        if fields:
            with contextlib.suppress(DecodeError):
                envelope = decode(fields)
        if envelope is not None and isinstance(envelope.message, _TOGETHER):
            together.append((entry_id, fields, envelope))
            continue
        if together:
            runs.append(together)
            together = []
        runs.append([(entry_id, fields)])
    if together:
        runs.append(together)
    return runs


def _about(envelope: Envelope) -> dict[str, object]:
    """What every log line written while an event is applied says of it."""
    message = envelope.message
    session_id, task_id = getattr(message, "session_id", None), getattr(message, "task_id", None)
    return {
        "event": envelope.type,
        "event_id": envelope.id,
        "session_id": None if session_id is None else str(session_id),
        "task_id": None if task_id is None else str(task_id),
        "attempt": getattr(message, "attempt", None),
        "worker": getattr(message, "worker", None),
    }


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
