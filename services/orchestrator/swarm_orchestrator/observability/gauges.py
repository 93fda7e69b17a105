"""The figures of how things stand, read when `/metrics` is scraped: tasks and sessions by
status, task messages held in PostgreSQL for a free slot, each stream's consumer-group lag
and pending entries, live adapters, their slots and free slots, paused kinds, dead letters.

They come from PostgreSQL and Redis, which every replica shares, so every replica reports
the same values (aggregate them with `max`). A few cheap queries (grouped counts, most on
partial indexes; `XINFO` per stream) make one reading, kept for `ttl_s` so that several
scrapers, or one scraping often, cannot hammer the database; concurrent scrapes share one
reading. A store that does not answer leaves its figures out and says so in
`swarm_store_up`, while the counters of `observability.metrics` are still served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import swarm_common
from swarm_common.specs import AGENT_KINDS
from swarm_common.states import SessionStatus, TaskStatus
from swarm_common.streams import ADAPTERS_GROUP, ORCHESTRATOR_GROUP, Keys
from swarm_orchestrator.db.models import Outbox, Session, Task
from swarm_orchestrator.graph import fleet
from swarm_orchestrator.runtime.failures import is_transient

__all__ = ["Gauges"]

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0


@dataclass
class Gauges:
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    ttl_s: float = 2.0
    """How long one reading serves scrapes."""
    _reading: tuple[float, list[Metric]] | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def read(self) -> list[Metric]:
        """The metric families as they stand (at most `ttl_s` old)."""
        async with self._lock:
            now = time.monotonic()
            if self._reading is not None and now - self._reading[0] < self.ttl_s:
                return self._reading[1]
            families = await self._read_now()
            self._reading = (time.monotonic(), families)
            return families

    async def _read_now(self) -> list[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily(
            "swarm_store_up",
            "Whether the last reading reached the store (1) or not (0).",
            labels=["store"],
        )
        families: list[Metric] = [_info(), up]
        kinds: set[str] = set(AGENT_KINDS)
        try:
            async with asyncio.timeout(READ_TIMEOUT_S), self.sessionmaker() as db:
                stored, known = await _database(db, self.keys)
            families += stored
            kinds |= known
            up.add_metric(["postgresql"], 1)
        except Exception as exc:  # not ready: say so, serve the rest
            _not_read("PostgreSQL", exc)
            up.add_metric(["postgresql"], 0)
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                families += await _redis(self.redis, self.keys, sorted(kinds))
            up.add_metric(["redis"], 1)
        except Exception as exc:  # as above
            _not_read("Redis", exc)
            up.add_metric(["redis"], 0)
        took = GaugeMetricFamily(
            "swarm_metrics_read_seconds", "How long the last reading of these figures took."
        )
        took.add_metric([], time.perf_counter() - started)
        return [*families, took]


def _not_read(store: str, exc: Exception) -> None:
    if is_transient(exc):
        log.warning("metrics: %s not read", store, extra={"error": repr(exc)})
    else:  # a bug, not an outage
        log.exception("metrics: %s not read", store)


def _info() -> Metric:
    info = GaugeMetricFamily("swarm_info", "The orchestrator's version.", labels=["version"])
    info.add_metric([swarm_common.__version__], 1)
    return info


async def _database(db: AsyncSession, keys: Keys) -> tuple[list[Metric], set[str]]:
    """The figures kept in PostgreSQL, and every agent kind they name."""
    by_status = select(Task.agent, Task.status, func.count()).group_by(Task.agent, Task.status)
    counts = {(agent, status): n for agent, status, n in (await db.execute(by_status)).all()}
    states = await fleet.kinds(db)
    kinds = set(states) | {agent for agent, _ in counts}
    # Every kind and status, 0 included: a series that is there says "none" to PromQL.
    everything = {(k, str(s)): 0 for k in kinds for s in TaskStatus} | counts
    tasks = GaugeMetricFamily(
        "swarm_tasks", "Tasks by agent kind and status.", labels=["agent", "status"]
    )
    for (agent, status), count in sorted(everything.items()):
        tasks.add_metric([agent, status], count)
    sessions = GaugeMetricFamily("swarm_sessions", "Sessions by status.", labels=["status"])
    by_session = select(Session.status, func.count()).group_by(Session.status)
    stored = dict((await db.execute(by_session)).all())
    session_counts = {str(s): 0 for s in SessionStatus} | stored
    for status, count in sorted(session_counts.items()):
        sessions.add_metric([status], count)
    held = GaugeMetricFamily(
        "swarm_messages_held",
        "Task messages waiting in PostgreSQL for a free slot of their agent stream "
        "(`runtime.dispatch`), by stream.",
        labels=["stream"],
    )
    waiting = (
        select(Outbox.target, func.count())
        .where(Outbox.sent_at.is_(None), Outbox.task_id.is_not(None))
        .group_by(Outbox.target)
    )
    held_counts = {keys.tasks(k): 0 for k in kinds} | dict((await db.execute(waiting)).all())
    for target, count in sorted(held_counts.items()):
        held.add_metric([target], count)
    return [tasks, sessions, held, *_fleet(states.values())], kinds


def _fleet(states: Iterable[fleet.KindState]) -> list[Metric]:
    live = GaugeMetricFamily(
        "swarm_adapters_live", "Live adapters by agent kind.", labels=["agent"]
    )
    slots = GaugeMetricFamily(
        "swarm_slots", "Live adapters' slots (concurrency), by agent kind.", labels=["agent"]
    )
    free = GaugeMetricFamily(
        "swarm_slots_free",
        "Slots not taken by a queued or running task, by agent kind.",
        labels=["agent"],
    )
    paused = GaugeMetricFamily(
        "swarm_agent_paused",
        "Whether an agent kind is paused for its provider's limits (1) or not (0).",
        labels=["agent"],
    )
    for state in states:
        live.add_metric([state.kind], state.workers)
        slots.add_metric([state.kind], state.slots)
        free.add_metric([state.kind], state.free)
        paused.add_metric([state.kind], int(state.paused))
    return [live, slots, free, paused]


async def _redis(redis: Redis, keys: Keys, kinds: Sequence[str]) -> list[Metric]:
    """Consumer-group lag and pending entries of every stream, and the dead letters."""
    streams = [(keys.tasks(kind), ADAPTERS_GROUP) for kind in kinds]
    streams.append((keys.events, ORCHESTRATOR_GROUP))
    pipe = redis.pipeline(transaction=False)
    for stream, _ in streams:
        pipe.xinfo_groups(stream)
    pipe.xinfo_stream(keys.dead)
    replies = await pipe.execute(raise_on_error=False)
    lag = GaugeMetricFamily(
        "swarm_stream_lag",
        "Entries of a stream its consumer group has not read yet, by stream.",
        labels=["stream", "group"],
    )
    pending = GaugeMetricFamily(
        "swarm_stream_pending",
        "Entries read by a consumer and not acknowledged yet, by stream.",
        labels=["stream", "group"],
    )
    for (stream, group), reply in zip(streams, replies[:-1], strict=True):
        found = _group(reply, group)
        if found is None:  # no such stream or group yet: nothing waits in it
            continue
        lag.add_metric([stream, group], found.get("lag") or 0)
        pending.add_metric([stream, group], found.get("pending") or 0)
    dead = CounterMetricFamily(
        "swarm_dead_letters",
        "Entries ever moved to the dead-letter stream, by adapters and orchestrators alike.",
    )
    dead.add_metric([], _entries_added(replies[-1]))
    return [lag, pending, dead]


def _group(reply: Any, name: str) -> dict[str, Any] | None:
    if not isinstance(reply, list):
        return None  # an error: the stream does not exist
    for group in reply:
        found = group.get("name")
        if (found.decode() if isinstance(found, bytes) else found) == name:
            return dict(group)
    return None


def _entries_added(reply: Any) -> int:
    """`entries-added` of `XINFO STREAM` (every entry ever appended, trimmed or not); the
    length on a server too old to say; 0 for a stream not made yet."""
    if not isinstance(reply, dict):
        return 0
    return int(reply.get("entries-added", reply.get("length", 0)) or 0)
