"""What the orchestrator knows of its adapters: which agent kinds have a live adapter now.

Planning (`planning.plans`, the `auto` planner and the kinds a plan may use) and review
(`graph.reviews`, a reviewer of another kind than the builder) ask here; nothing else
decides whether a kind is served.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import utcnow
from swarm_orchestrator.db.models import Worker

__all__ = ["LIVE_WORKER_S", "live_agents"]

LIVE_WORKER_S = 120
"""A worker heard from this recently counts as live."""


async def live_agents(db: AsyncSession) -> set[str]:
    """The agent kinds adapters heard from lately serve."""
    rows = await db.scalars(
        select(Worker.agent)
        .where(
            Worker.status == "online",
            Worker.last_seen_at > utcnow() - timedelta(seconds=LIVE_WORKER_S),
        )
        .distinct()
    )
    return set(rows.all())
