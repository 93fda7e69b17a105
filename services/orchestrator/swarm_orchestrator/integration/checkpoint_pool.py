"""Which checkpoints run, how many at once, and what stops them.

Checkpoint gates run session-supplied commands for up to `SWARM_CHECKPOINT_GATE_MAX_S`
each, so one tenant's slow gates must not hold everyone's checkpoints: each orchestrator
runs at most `SWARM_CHECKPOINT_WORKERS` at once, and a lease is given only to a checkpoint
whose tenant runs fewer than `SWARM_CHECKPOINT_TENANT_SLOTS` (across every replica: the
count is PostgreSQL's, taken under one advisory lock) and whose session runs none (its
checkpoints publish in order). The oldest such checkpoint goes first. While the system is
stopped nothing is leased.

A running checkpoint is watched: when its session is cancelled or the system is stopped,
its gate is killed (the whole process group) and the checkpoint fails without a tag. A
checkpoint whose orchestrator stops is given back at once (pending again); one whose
orchestrator died is leased again when its lease runs out (its own gates' timeouts, each
at most the cap, plus a margin).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.gates import GATE_NAMES
from swarm_common.states import SessionStatus
from swarm_common.system import SystemMode
from swarm_orchestrator.db.advisory import lock_key
from swarm_orchestrator.db.models import Checkpoint, Session
from swarm_orchestrator.integration.checkpoints import Lease, run_leased
from swarm_orchestrator.integration.merges import session_settings
from swarm_orchestrator.runtime.system_mode import get_state
from swarm_orchestrator.settings import OrchestratorSettings

__all__ = ["CheckpointPool"]

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 300.0
WATCH_INTERVAL_S = 1.0

_PICK_SQL = text("""
SELECT c.id, c.session_id FROM checkpoints c JOIN sessions s ON s.id = c.session_id
WHERE (c.status = 'pending' OR (c.status = 'running' AND c.lease_until < now()))
  AND NOT EXISTS (
      SELECT 1 FROM checkpoints o
      WHERE o.session_id = c.session_id AND o.id <> c.id
        AND o.status = 'running' AND o.lease_until >= now())
  AND (SELECT count(*) FROM checkpoints r JOIN sessions rs ON rs.id = r.session_id
       WHERE r.status = 'running' AND r.lease_until >= now()
         AND rs.tenant IS NOT DISTINCT FROM s.tenant) < :tenant_slots
ORDER BY c.id FOR UPDATE OF c SKIP LOCKED LIMIT 1
""")

_LEASE_SQL = text("""
UPDATE checkpoints SET status = 'running', runs = runs + 1, started_at = now(),
       lease_until = now() + make_interval(secs => :lease)
WHERE id = :id
RETURNING id, runs
""")

_GIVE_BACK_SQL = text("""
UPDATE checkpoints SET status = 'pending', lease_until = NULL
WHERE id = :id AND runs = :runs AND status = 'running'
""")


@dataclass
class CheckpointPool:
    """The checkpoints this process runs now. `fill` leases what may start and returns at
    once (the background loop); `run_due` also waits for them (tests and tools)."""

    sessionmaker: async_sessionmaker[AsyncSession]
    settings: OrchestratorSettings
    on_done: Callable[[], None] | None = None
    """Called when a run ends: a slot is free."""
    running: dict[int, asyncio.Task[None]] = field(default_factory=dict)

    closed: bool = False

    async def fill(self) -> list[asyncio.Task[None]]:
        started: list[asyncio.Task[None]] = []
        while self._open() and len(self.running) < self.settings.checkpoint_workers:
            lease = await self._lease()
            if lease is None:
                break
            if not self._open():  # stopped while it leased: any replica takes it
                await self._give_back(lease)
                break
            task = asyncio.create_task(self._run(lease), name=f"swarm-checkpoint-{lease.id}")
            self.running[lease.id] = task
            task.add_done_callback(functools.partial(self._ended, lease.id))
            started.append(task)
        return started

    async def run_due(self) -> int:
        """Run every checkpoint that may run now, to its end; how many ran."""
        finished = 0
        while started := await self.fill():
            await asyncio.gather(*started, return_exceptions=True)
            finished += len(started)
        return finished

    def _open(self) -> bool:
        return not self.closed

    async def stop(self) -> None:
        """Kill the gates of this process's checkpoints and give them back (pending again,
        for any orchestrator to run)."""
        self.closed = True
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)

    def _ended(self, key: int, _: asyncio.Task[None]) -> None:
        task = self.running.pop(key, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("checkpoint run failed", exc_info=task.exception())
        if self.on_done is not None:
            self.on_done()

    async def _lease(self) -> Lease | None:
        async with self.sessionmaker() as db, db.begin():
            if (await get_state(db)).mode == SystemMode.STOPPED:
                return None
            await db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("ckpt")})
            slots = {"tenant_slots": self.settings.checkpoint_tenant_slots}
            picked = (await db.execute(_PICK_SQL, slots)).first()
            if picked is None:
                return None
            session = await db.get(Session, picked.session_id)
            assert session is not None
            lease = {"id": picked.id, "lease": self._lease_seconds(session)}
            row = (await db.execute(_LEASE_SQL, lease)).one()
        return Lease(id=row.id, runs=row.runs)

    def _lease_seconds(self, session: Session) -> float:
        """Long enough for the session's gates (each at most the cap), plus a margin."""
        gates = session_settings(session).gates
        most = self.settings.checkpoint_gate_max_s
        return sum(min(gates.timeouts.get(n, gates.timeout_s), most) for n in GATE_NAMES) + (
            LEASE_MARGIN_S
        )

    async def _give_back(self, lease: Lease) -> None:
        async with self.sessionmaker() as db, db.begin():
            await db.execute(_GIVE_BACK_SQL, {"id": lease.id, "runs": lease.runs})

    async def _run(self, lease: Lease) -> None:
        cancel = asyncio.Event()
        watcher = asyncio.create_task(self._watch(lease, cancel))
        try:
            await run_leased(self.sessionmaker, lease, settings=self.settings, cancel=cancel)
        except asyncio.CancelledError:  # this orchestrator stops: another runs it at once
            await asyncio.shield(self._give_back(lease))
            raise
        finally:
            watcher.cancel()

    async def _watch(self, lease: Lease, cancel: asyncio.Event) -> None:
        """Set `cancel` once the checkpoint's session is cancelled or the system stopped."""
        while not cancel.is_set():
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                if await self._should_stop(lease):
                    cancel.set()
            except Exception:  # a database away for a moment: look again next time
                log.warning("cannot watch a checkpoint", exc_info=True)

    async def _should_stop(self, lease: Lease) -> bool:
        async with self.sessionmaker() as db:
            status = await db.scalar(
                select(Session.status)
                .join(Checkpoint, Checkpoint.session_id == Session.id)
                .where(Checkpoint.id == lease.id)
            )
            stopped = (await get_state(db)).mode == SystemMode.STOPPED
        return stopped or status == SessionStatus.CANCELLED
