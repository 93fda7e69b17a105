"""Paused agent kinds: a kind whose provider keeps refusing is left alone until its reset.

Every rate-limited (or out-of-quota) attempt counts against the kind it ran on
(`record_limit`, in the transaction that applies its report). Once `pause_after` of them
fall within `pause_window_s`, the kind is paused until the latest reset they reported, or
for `pause_s` when none said. While paused, routing sends no `auto` task to it, and tasks
with fallbacks move on (`graph.failover`: at once for the one whose report paused it, on
the registry's next pass for its other ready tasks, `graph.suspension`). A pause ends by
itself; an expired one is ignored, never cleared by a loop.

The row of a kind is locked while it is counted (`INSERT … ON CONFLICT DO NOTHING`, then
`SELECT … FOR UPDATE`), after the report's session, task and attempt locks and with no
other lock taken after it, so two reports of one kind at once count both and cannot
deadlock. A report delivered twice is applied once (`graph.reports`), so it counts once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import utcnow
from swarm_orchestrator.db.models import KindPause

__all__ = ["Pause", "PausePolicy", "active", "record_limit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PausePolicy:
    """When a kind is paused (the orchestrator's `failover_*` settings)."""

    pause_after: int = 3
    """Rate-limited attempts of one kind within the window that pause it; 0: never."""
    window_s: float = 600.0
    pause_s: float = 600.0
    """How long a kind is paused when none of its limits reported a reset."""


@dataclass(frozen=True)
class Pause:
    kind: str
    until: datetime
    reason: str
    new: bool = False
    """It was not paused before this limit (a pause extended is not new)."""


async def active(db: AsyncSession) -> dict[str, Pause]:
    """The kinds paused now, with until when and why."""
    rows = await db.scalars(select(KindPause).where(KindPause.paused_until > utcnow()))
    return {
        row.kind: Pause(kind=row.kind, until=row.paused_until, reason=row.reason or "")
        for row in rows.all()
        if row.paused_until is not None
    }


async def record_limit(
    db: AsyncSession,
    *,
    kind: str,
    reset_at: datetime | None,
    policy: PausePolicy,
    now: datetime | None = None,
) -> Pause | None:
    """Count one rate-limited attempt of `kind` (its provider's reset, if it said); the
    pause it starts or extends, or None."""
    now = now or utcnow()
    await db.execute(
        insert(KindPause).values(kind=kind).on_conflict_do_nothing(index_elements=["kind"])
    )
    row = await db.scalar(
        select(KindPause)
        .where(KindPause.kind == kind)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None  # inserted above, and never deleted
    since = now - timedelta(seconds=policy.window_s)
    keep = max(policy.pause_after - 1, 0)
    recent = [at for at in map(_time, row.hits or []) if at is not None and at > since]
    hits = [*(recent[-keep:] if keep else []), now]
    row.hits = [at.isoformat() for at in hits]
    row.reset_at = _latest_reset(row.reset_at, reset_at, now)
    row.updated_at = now
    if not policy.pause_after or len(hits) < policy.pause_after:
        return None
    until = row.reset_at or now + timedelta(seconds=policy.pause_s)
    current = row.paused_until if row.paused_until and row.paused_until > now else None
    if current is not None and current >= until:
        return None
    said = f"for {policy.pause_s:g}s (no reset said)"
    if row.reset_at is not None:
        said = "until its reported reset"
    reason = f"{len(hits)} rate-limited attempts within {policy.window_s:g}s: paused {said}"
    row.paused_until, row.reason = until, reason
    log.warning(
        "agent kind paused: it keeps hitting its provider's limits",
        extra={"kind": kind, "until": until.isoformat(), "reason": reason},
    )
    return Pause(kind=kind, until=until, reason=reason, new=current is None)


def _latest_reset(known: datetime | None, said: datetime | None, now: datetime) -> datetime | None:
    """The latest reset still ahead: the one known, or the one just said if later."""
    ahead = [at for at in (known, _aware(said)) if at is not None and at > now]
    return max(ahead) if ahead else None


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _time(value: object) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(value)) if isinstance(value, str) else None
    except ValueError:
        return None
