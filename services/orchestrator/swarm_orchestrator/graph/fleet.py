"""What the orchestrator knows of its adapters: which agent kinds have a live adapter now,
with how many free slots, what they can do, and since when a kind has had none.

The truth of liveness is each adapter's Redis key (`swarm:worker:<name>`, a hash with a
TTL that a live adapter keeps renewing, `swarm_adapter.upkeep`); `runtime.registry` mirrors
those keys into the `workers` table on every pass (`mirror`): a key that is there makes its
worker `online` with the hash's `updated_at` as `last_seen_at`, a key gone makes it
`offline`. So an idle adapter stays live, and one killed with `kill -9` is offline once its
key expires (`worker_ttl_s`) and a pass has run. `WorkerOnline`/`WorkerOffline` events and
heartbeats write the same rows in between.

Planning (`planning.plans`, the `auto` planner and the kinds a plan may use), routing
(`graph.routing`), suspension (`graph.suspension`), failover (`graph.failover`) and review
(a reviewer of another kind than the builder) ask here; nothing else decides whether a kind
is served. A kind may also be paused for its provider's limits (`graph.pauses`): it is
still live, but says until when it takes no task (`KindState.paused_until`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.capabilities import KIND_CAPABILITIES
from swarm_common.messages import utcnow
from swarm_common.specs import AGENT_KINDS
from swarm_common.states import TaskStatus
from swarm_orchestrator.db.models import Task, Worker
from swarm_orchestrator.graph import pauses
from swarm_orchestrator.observability import metrics

__all__ = [
    "LIVE_WORKER_S",
    "OFFLINE_AFTER_S",
    "KindState",
    "Sighting",
    "kinds",
    "live_agents",
    "mirror",
    "sighting",
    "slots",
]

log = logging.getLogger(__name__)

LIVE_WORKER_S = 120
"""A worker heard from this recently counts as live (while the registry is mirrored, a
live adapter's `last_seen_at` is never older than a third of its key's TTL)."""
OFFLINE_AFTER_S = 5.0
"""A worker whose key is gone is declared offline once it has not been seen for this long
(its `worker.online` event may be applied a moment before its first key is written)."""

CLOCK_SKEW_S = 60.0
"""An adapter whose key says it wrote it further from now than this has a clock that is
off; its sighting counts as now."""

_IN_FLIGHT = (TaskStatus.QUEUED, TaskStatus.RUNNING)


@dataclass(frozen=True)
class KindState:
    """One agent kind, as the fleet stands now."""

    kind: str
    workers: int = 0
    """Live adapters of the kind."""
    slots: int = 0
    """Their concurrency, summed."""
    load: int = 0
    """Tasks of the kind queued or running now (in every session)."""
    capabilities: frozenset[str] = frozenset()
    """What every live adapter of the kind announced it can do (the kind's defaults, in
    `swarm_common.capabilities`, when none is live or they announced nothing)."""
    models: frozenset[str] = frozenset()
    """The models its live adapters may use, when every one of them lists its own; empty:
    unknown (any model may be asked for)."""
    last_seen_at: datetime | None = None
    """The newest sighting of any adapter of the kind, live or not; None: never seen."""
    paused_until: datetime | None = None
    """Paused for its provider's limits until then (`graph.pauses`); None: not paused."""
    pause_reason: str | None = None

    @property
    def live(self) -> bool:
        return self.workers > 0

    @property
    def paused(self) -> bool:
        return self.paused_at(utcnow())

    def paused_at(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    def paused_text(self) -> str:
        """`paused until 2026-12-03 19:20:03 UTC (3 rate-limited attempts within 600s…)`."""
        if self.paused_until is None:
            return "not paused"
        until = self.paused_until.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        why = f" ({self.pause_reason})" if self.pause_reason else ""
        return f"paused until {until} UTC{why}"

    @property
    def free(self) -> int:
        """Slots not taken by queued or running tasks."""
        return max(self.slots - self.load, 0)

    def took(self, n: int = 1) -> KindState:
        """The same kind with `n` more tasks queued on it (routing several at once)."""
        return replace(self, load=self.load + n)

    def missing_since(self) -> str:
        """`since 18:20:03 UTC` for a kind last seen then; `ever` for one never seen."""
        if self.last_seen_at is None:
            return "ever"
        return f"since {self.last_seen_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC"


async def live_agents(db: AsyncSession) -> set[str]:
    """The agent kinds live adapters serve now."""
    rows = await db.scalars(select(Worker.agent).where(*_live()).distinct())
    return set(rows.all())


async def slots(db: AsyncSession) -> dict[str, int]:
    """Each served kind's live slots (its live adapters' concurrency, summed), without the
    loads `kinds` counts: what dispatch fills on every pass (`runtime.dispatch`)."""
    rows = await db.execute(
        select(Worker.agent, func.sum(func.greatest(Worker.concurrency, 0)))
        .where(*_live())
        .group_by(Worker.agent)
    )
    return {agent: int(total or 0) for agent, total in rows.all()}


async def kinds(db: AsyncSession) -> dict[str, KindState]:
    """Every agent kind (`AGENT_KINDS`, and any other an adapter announced) with its live
    adapters, free slots, capabilities, models, last sighting and pause."""
    alive = (await db.scalars(select(Worker).where(*_live()).order_by(Worker.name))).all()
    last_seen = dict(
        (
            await db.execute(
                select(Worker.agent, func.max(Worker.last_seen_at)).group_by(Worker.agent)
            )
        ).all()
    )
    loads = dict(
        (
            await db.execute(
                select(Task.agent, func.count())
                .where(Task.status.in_([s.value for s in _IN_FLIGHT]))
                .group_by(Task.agent)
            )
        ).all()
    )
    paused = await pauses.active(db)
    by_kind: dict[str, list[Worker]] = {k: [] for k in (*AGENT_KINDS, *last_seen, *paused)}
    for row in alive:
        by_kind[row.agent].append(row)
    return {
        kind: KindState(
            kind=kind,
            workers=len(workers),
            slots=sum(max(w.concurrency, 0) for w in workers),
            load=int(loads.get(kind, 0)),
            capabilities=_capabilities(kind, workers),
            models=_models(workers),
            last_seen_at=last_seen.get(kind),
            paused_until=paused[kind].until if kind in paused else None,
            pause_reason=paused[kind].reason if kind in paused else None,
        )
        for kind, workers in by_kind.items()
    }


def _live() -> tuple[ColumnElement[bool], ...]:
    """Which `workers` rows are live adapters: `online` as the registry mirror last saw
    them, and seen within `LIVE_WORKER_S` (in case no mirror runs)."""
    return (
        Worker.status == "online",
        Worker.last_seen_at > utcnow() - timedelta(seconds=LIVE_WORKER_S),
    )


def _capabilities(kind: str, alive: Sequence[Worker]) -> frozenset[str]:
    """What every live adapter of `kind` can do (the weakest decides: a task may reach any
    of them); the kind's defaults where none announced anything."""
    default = KIND_CAPABILITIES.get(kind, frozenset())
    announced = [frozenset(w.capabilities or ()) or default for w in alive]
    if not announced:
        return default
    return frozenset.intersection(*announced)


def _models(alive: Sequence[Worker]) -> frozenset[str]:
    """The models a task may ask of the kind: known only when every live adapter lists its
    own (one that lists none takes whatever it is given)."""
    if not alive or any(not w.models for w in alive):
        return frozenset()
    return frozenset(m for w in alive for m in w.models)


# -- the registry mirror ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sighting:
    """One live adapter's key, as read from Redis."""

    name: str
    agent: str
    host: str = ""
    pid: int | None = None
    concurrency: int = 1
    busy: int = 0
    models: list[str] = field(default_factory=list)
    cli_version: str | None = None
    capabilities: list[str] = field(default_factory=list)
    seen_at: datetime | None = None
    """The hash's `updated_at` (the adapter's clock), never later than now."""


def sighting(name: str, fields: Mapping[bytes | str, bytes | str]) -> Sighting | None:
    """Read one liveness hash (`swarm_adapter.upkeep.advertise`); None when it is not one
    (no `agent`)."""
    values = {_text(k): _text(v) for k, v in fields.items()}
    agent = values.get("agent")
    if not agent:
        return None
    return Sighting(
        name=name,
        agent=agent[:32],
        host=values.get("host", "")[:255],
        pid=_int(values.get("pid")),
        concurrency=_int(values.get("concurrency")) or 1,
        busy=_int(values.get("busy")) or len(_list(values.get("running"))),
        models=[str(m)[:200] for m in _list(values.get("models"))][:50],
        cli_version=(values.get("cli_version") or None) and values["cli_version"][:200],
        capabilities=[str(c)[:50] for c in _list(values.get("capabilities"))][:20],
        seen_at=_time(values.get("updated_at")),
    )


async def mirror(db: AsyncSession, seen: Sequence[Sighting]) -> set[str]:
    """Make the `workers` table say what the registry says, in the caller's transaction:
    every sighted worker `online` (inserted if it was never announced), every other one that
    was `online` and has not been seen for `OFFLINE_AFTER_S` `offline`. Returns the names
    that went offline."""
    now = utcnow()
    for s in seen:
        at = _seen_at(s, now)
        values = {
            "agent": s.agent,
            "host": s.host,
            "pid": s.pid,
            "concurrency": s.concurrency,
            "status": "online",
            "last_seen_at": at,
            "busy": s.busy,
            "models": s.models,
            "cli_version": s.cli_version,
            "capabilities": s.capabilities,
        }
        await db.execute(
            insert(Worker)
            .values(name=s.name, started_at=at, **values)
            .on_conflict_do_update(index_elements=[Worker.name], set_=values)
        )
    gone = await db.execute(
        update(Worker)
        .where(
            Worker.status == "online",
            Worker.name.not_in([s.name for s in seen]),
            Worker.last_seen_at < now - timedelta(seconds=OFFLINE_AFTER_S),
        )
        .values(status="offline", busy=0)
        .returning(Worker.name, Worker.agent)
    )
    silent = dict(gone.all())
    if silent:
        log.warning("adapters went silent: offline", extra={"workers": sorted(silent)})
        metrics.adapters_lost(db, agents=silent.values())
    return set(silent)


def _seen_at(seen: Sighting, now: datetime) -> datetime:
    """When the adapter last wrote its key (its own clock), or now when that clock is off
    by more than `CLOCK_SKEW_S`: the key's being there is what makes it live."""
    at = seen.seen_at
    if at is None or abs((now - at).total_seconds()) > CLOCK_SKEW_S:
        return now
    return min(at, now)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _list(value: str | None) -> list[object]:
    try:
        found = json.loads(value) if value else []
    except ValueError:
        return []
    return found if isinstance(found, list) else []


def _time(value: str | None) -> datetime | None:
    try:
        at = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return at if at is None or at.tzinfo is not None else None
