"""PostgreSQL advisory locks that let one orchestrator replica at a time run a loop step
(the outbox relay, the reaper). Transaction-scoped: a lock is released when its transaction
ends, however it ends, so a replica that dies never leaves one behind."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["lock_key", "try_xact_lock"]


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name`."""
    digest = hashlib.blake2b(f"swarm:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def try_xact_lock(db: AsyncSession, name: str) -> bool:
    """Take the lock `name` for the rest of the current transaction; False when another
    transaction holds it."""
    return bool(await db.scalar(select(func.pg_try_advisory_xact_lock(lock_key(name)))))
