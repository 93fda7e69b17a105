"""Which held task message goes out next: priorities and fair shares that hold.

A task message waits in the outbox (`db.outbox.add_tasks`: a row that names its task,
attempt, session and priority), not in Redis, until its agent stream has room for it. On
each pass the relay (`runtime.relay`, one replica at a time under its lock) asks
`Dispatcher.take` which held rows to publish:

- **How many**, per agent stream: the free slots of the kind's live adapters (their
  concurrency summed, `graph.fleet.slots`, less the tasks running), plus `headroom`, less
  the messages out and not yet started (rows marked `outstanding` when published, settled
  here once their attempt is no longer queued). Adapters read only when a slot is free
  (`swarm_adapter.worker`: each slot reads one entry), so a stream holds at most
  `headroom` messages more than can start, and a task that becomes ready waits behind no
  more than those. A kind with no live adapter, or one paused for its provider's limits
  (`graph.pauses`), gets only the headroom.
- **Which**: weighted round robin across tenants (`tenant_weights`, default 1), then across
  a tenant's sessions (`settings.weight`), then the task's priority (highest first), then
  its chain (`Task.chain`, the longest first: the tasks a graph's critical path waits on go
  out early), then age. The round robin is stride scheduling: a pick goes to the tenant
  (session) with the lowest pass, whose pass then grows by 1/weight, and one back from idle
  starts at the current virtual time (idling earns no credit). So over many picks the
  shares are the weights, with two slots as with two hundred; ties go to the higher
  priority, then the longer chain, then the older message.
- **Dropped**: a held row whose attempt is no longer its task's queued attempt (the task was
  cancelled, its attempt lost or superseded) is marked sent without being published.

A pass runs whenever a commit in the relay's process may have freed a slot (the event
consumer applied a start or an end: `Background.wake`), and every `relay_poll_interval_s`
for what other replicas did. Every query is index probes, whatever the backlog (a pass
takes 3 to 6 ms with 10,000 messages held, `bench/priority.py`): a skip scan of
`ix_outbox_held` for the streams and each stream's sessions, the top of each session, and
the few rows out.

The passes live in this process's memory: they are the fairness's bookkeeping, not the
work's state. A restart starts them afresh from the current virtual time; with several
replicas each relay's own picks keep the weights, and so does their sum.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.specs import AGENT_KINDS
from swarm_common.states import TaskStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db.models import Task
from swarm_orchestrator.graph import fleet, pauses

__all__ = ["Dispatcher", "Held", "Shares", "Stride", "budget", "fair_order"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Held:
    """A held task message that may go out now."""

    id: int
    """The outbox row."""
    session_id: uuid.UUID
    tenant: str | None
    weight: int
    """Its session's share (`settings.weight`)."""
    priority: int
    chain: int = 0
    """Its task's `Task.chain`: of one priority, the longer chain goes first."""

    @property
    def rank(self) -> tuple[int, int, int]:
        """Sorts first what goes first within a session: higher priority, then the longer
        chain, then older."""
        return (-self.priority, -self.chain, self.id)


def budget(*, slots: int, running: int, outstanding: int, headroom: int, paused: bool) -> int:
    """How many more held messages a stream takes now: its kind's free slots (none while
    the kind is paused) plus `headroom`, less the messages out and not yet started."""
    free = 0 if paused else max(slots - running, 0)
    return max(free + headroom - outstanding, 0)


class Stride(Generic[K]):
    """Weighted round robin without a fixed cycle (stride scheduling): `pick` gives the
    client with the lowest pass and advances it by 1/weight."""

    def __init__(self) -> None:
        self.passes: dict[K, float] = {}
        self.now = 0.0
        """The virtual time: the lowest pass of the clients waiting at the last pick."""

    def pick(self, waiting: Mapping[K, tuple[int, Any]]) -> K:
        """One of `waiting` (client → (weight, tie-breaker; lower first))."""
        for client in waiting:
            self.passes[client] = max(self.passes.get(client, self.now), self.now)
        chosen = min(waiting, key=lambda c: (self.passes[c], waiting[c][1]))
        self.passes[chosen] += 1 / max(waiting[chosen][0], 1)
        self.now = max(self.now, min(self.passes[c] for c in waiting))
        for client in [c for c, p in self.passes.items() if p <= self.now and c not in waiting]:
            del self.passes[client]  # back from idle it would start at `now` anyway
        return chosen


@dataclass
class Shares:
    """One stream's round robin: across tenants, and across each tenant's sessions."""

    tenants: Stride[str | None] = field(default_factory=Stride)
    sessions: dict[str | None, Stride[uuid.UUID]] = field(default_factory=dict)


def fair_order(
    held: Iterable[Held],
    n: int,
    *,
    shares: Shares | None = None,
    tenant_weights: Mapping[str, int] | None = None,
) -> list[Held]:
    """The first `n` of `held` to publish: tenants, then sessions by weighted round robin
    (`shares` keeps the passes between calls), then priority, chain and age."""
    shares = shares or Shares()
    weights = tenant_weights or {}
    queues: dict[str | None, dict[uuid.UUID, deque[Held]]] = defaultdict(dict)
    for row in sorted(held, key=lambda r: r.rank):
        queues[row.tenant].setdefault(row.session_id, deque()).append(row)
    chosen: list[Held] = []
    while queues and len(chosen) < n:
        tenant = shares.tenants.pick(
            {t: (weights.get(t, 1) if t else 1, _head(s.values())) for t, s in queues.items()}
        )
        sessions = queues[tenant]
        stride = shares.sessions.setdefault(tenant, Stride())
        session = stride.pick({s: (q[0].weight, q[0].rank) for s, q in sessions.items()})
        chosen.append(sessions[session].popleft())
        if not sessions[session]:
            del sessions[session]
            if not sessions:
                del queues[tenant]
    for tenant in [t for t in shares.sessions if t not in shares.tenants.passes]:
        del shares.sessions[tenant]  # forgotten with the tenant's pass
    return chosen


def _head(queues: Iterable[deque[Held]]) -> tuple[int, int, int]:
    return min(q[0].rank for q in queues)


@dataclass
class Dispatcher:
    """Decides which held task messages the relay publishes (see the module docstring)."""

    headroom: int = 1
    """Messages a stream may hold beyond its free slots (so a freed slot finds one at
    once); a high-priority task starts within `headroom + 1` starts of its kind."""
    tenant_weights: Mapping[str, int] = field(default_factory=dict)
    """Each tenant's share of each kind's slots (default 1, and 1 for sessions of none)."""
    _shares: dict[str, Shares] = field(default_factory=dict, init=False)

    async def take(self, db: AsyncSession, keys: Keys, *, limit: int = 1000) -> list[int]:
        """The outbox ids of up to `limit` held task messages to publish now, in order. The
        caller holds the relay's lock, publishes them in its transaction and marks them
        `outstanding` (until their attempt starts: `_outstanding` settles them)."""
        targets = (await db.scalars(_TARGETS_SQL)).all()
        if not targets:
            return []
        out = await _outstanding(db)
        slots = await fleet.slots(db)
        kinds = {keys.tasks(agent): agent for agent in (*AGENT_KINDS, *slots)}
        running: dict[str, int] = dict((await db.execute(_RUNNING)).all())
        paused = set(await pauses.active(db))
        chosen: list[int] = []
        for target in targets:
            agent = kinds.get(target)
            if agent is None:
                continue  # another deployment's stream (another Redis prefix)
            n = budget(
                slots=slots.get(agent, 0),
                running=running.get(agent, 0),
                outstanding=out.get(target, 0),
                headroom=self.headroom,
                paused=agent in paused,
            )
            n = min(n, limit - len(chosen))
            if n > 0:
                chosen += await self._pick(db, target, n)
        return chosen

    async def _pick(self, db: AsyncSession, target: str, n: int) -> list[int]:
        held = await _candidates(db, target, n)
        if any(not current for _, current in held):
            dropped = await db.execute(_DROP_SQL, {"target": target})
            log.info(
                "held task messages of attempts no longer queued dropped",
                extra={"stream": target, "count": dropped.rowcount},  # type: ignore[attr-defined]
            )
            held = await _candidates(db, target, n)
        shares = self._shares.setdefault(target, Shares())
        rows = [row for row, current in held if current]
        picked = fair_order(rows, n, shares=shares, tenant_weights=self.tenant_weights)
        return [row.id for row in picked]


_HELD = "o.sent_at IS NULL AND o.task_id IS NOT NULL"
_CURRENT = "t.id = o.task_id AND t.attempt = o.attempt AND t.status = 'queued'"

_RUNNING = (
    select(Task.agent, func.count()).where(Task.status == TaskStatus.RUNNING).group_by(Task.agent)
)

_TARGETS_SQL = text(f"""
    WITH RECURSIVE targets(target) AS (
        (SELECT o.target FROM outbox o WHERE {_HELD} ORDER BY o.target LIMIT 1)
        UNION ALL
        SELECT (
            SELECT o.target FROM outbox o
            WHERE {_HELD} AND o.target > targets.target ORDER BY o.target LIMIT 1
        )
        FROM targets WHERE targets.target IS NOT NULL
    )
    SELECT target FROM targets WHERE target IS NOT NULL
""")
"""The streams with held messages (a skip scan of `ix_outbox_held`: one probe per stream)."""

_CANDIDATES_SQL = text(f"""
    WITH RECURSIVE held(session_id) AS (
        (
            SELECT o.session_id FROM outbox o
            WHERE {_HELD} AND o.target = :target ORDER BY o.session_id LIMIT 1
        )
        UNION ALL
        SELECT (
            SELECT o.session_id FROM outbox o
            WHERE {_HELD} AND o.target = :target AND o.session_id > held.session_id
            ORDER BY o.session_id LIMIT 1
        )
        FROM held WHERE held.session_id IS NOT NULL
    )
    SELECT o.id, o.session_id, o.priority, o.chain, s.tenant,
           s.settings ->> 'weight' AS weight, t.id IS NOT NULL AS current
    FROM held
    JOIN sessions s ON s.id = held.session_id
    CROSS JOIN LATERAL (
        SELECT o.id, o.session_id, o.priority, o.chain, o.task_id, o.attempt FROM outbox o
        WHERE {_HELD} AND o.target = :target AND o.session_id = held.session_id
        ORDER BY o.priority DESC, o.chain DESC, o.id LIMIT :n
    ) o
    LEFT JOIN tasks t ON {_CURRENT}
""")
"""The first `n` held messages of each session on a stream, by priority, chain and age, and
whether each one's attempt is still its task's queued one (index probes only: a skip scan
over the sessions, then the top of each)."""

_DROP_SQL = text(f"""
    UPDATE outbox o SET sent_at = now()
    WHERE {_HELD} AND o.target = :target
      AND NOT EXISTS (SELECT 1 FROM tasks t WHERE {_CURRENT})
""")
"""Held messages whose attempt is no longer queued are dropped (marked sent, unpublished)."""


_OUTSTANDING_SQL = text(f"""
    WITH out AS (
        SELECT o.id, o.target, EXISTS (SELECT 1 FROM tasks t WHERE {_CURRENT}) AS queued
        FROM outbox o WHERE o.outstanding
    ), settled AS (
        UPDATE outbox o SET outstanding = false FROM out WHERE o.id = out.id AND NOT out.queued
    )
    SELECT target, count(*) FROM out WHERE queued GROUP BY target
""")
"""Per stream, how many messages out are of attempts still queued; the rest stop being
outstanding (a probe of `ix_outbox_outstanding`, then one of the task's key each)."""


async def _outstanding(db: AsyncSession) -> Counter[str]:
    """Per stream, the messages out whose attempt is still queued (they wait in the stream
    or an adapter just read them); the others (started, ended, superseded) are settled, in
    the same statement."""
    return Counter(dict((await db.execute(_OUTSTANDING_SQL)).all()))


async def _candidates(db: AsyncSession, target: str, n: int) -> list[tuple[Held, bool]]:
    rows = await db.execute(_CANDIDATES_SQL, {"target": target, "n": n})
    return [
        (
            Held(
                id=r.id,
                session_id=r.session_id,
                tenant=r.tenant,
                weight=_weight(r.weight),
                priority=r.priority or 0,
                chain=r.chain,
            ),
            bool(r.current),
        )
        for r in rows
    ]


def _weight(value: str | None) -> int:
    """A session's `settings.weight` (validated when stored; 1 when absent)."""
    try:
        return max(int(value or 1), 1)
    except ValueError:
        return 1
