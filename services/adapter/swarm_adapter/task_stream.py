"""This adapter's side of its agent's task stream (`swarm:tasks:<agent>`, consumer group
`adapters`): reading new entries (`XREADGROUP`), taking over the ones a dead consumer left
pending (`XAUTOCLAIM`, with the count of deliveries), keeping a running entry ours
(`XCLAIM` touch), acknowledging, and copying an entry to the dead-letter stream. A group
that vanished (the stream deleted, say) is created again and the read counts as empty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from swarm_common.streams import ADAPTERS_GROUP, Keys, dead_letter, ensure_group
from swarm_common.text import decoded

__all__ = ["Entry", "TaskStream"]


@dataclass(frozen=True)
class Entry:
    id: bytes
    fields: dict[bytes, bytes]
    deliveries: int = 1
    """How often the group has handed it out, this time included."""


class TaskStream:
    def __init__(self, *, redis: Redis, keys: Keys, name: str, consumer: str) -> None:
        self.redis = redis
        self.keys = keys
        self.name = name
        self.consumer = consumer
        self._cursor = "0-0"
        """Where the scan of the pending list goes on (`XAUTOCLAIM`)."""

    async def ensure_group(self) -> None:
        await ensure_group(self.redis, self.name, ADAPTERS_GROUP)

    async def read(self, *, block_ms: int | None) -> Entry | None:
        """The next new entry, waiting up to `block_ms`; None when there was none."""
        try:
            reply: Any = await self.redis.xreadgroup(
                ADAPTERS_GROUP, self.consumer, {self.name: ">"}, count=1, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return None
        if not reply or not reply[0][1]:
            return None
        entry_id, fields = reply[0][1][0]
        return Entry(id=entry_id, fields=fields)

    async def read_many(self, count: int, *, block_ms: int | None) -> list[Entry]:
        """Up to `count` new entries, waiting up to `block_ms` for the first."""
        try:
            reply: Any = await self.redis.xreadgroup(
                ADAPTERS_GROUP, self.consumer, {self.name: ">"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return []
        if not reply:
            return []
        return [Entry(id=entry_id, fields=fields) for entry_id, fields in reply[0][1]]

    async def take_over(self, *, min_idle_ms: int) -> Entry | bool:
        """One entry another consumer left pending for `min_idle_ms`, now ours. Otherwise
        whether to call again at once: True when more of the pending list is left to scan or
        an entry trimmed away while pending was acknowledged, False when the scan is done."""
        try:
            reply: Any = await self.redis.xautoclaim(
                self.name,
                ADAPTERS_GROUP,
                self.consumer,
                min_idle_time=min_idle_ms,
                start_id=self._cursor,
                count=1,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return False
        cursor, entries = reply[0], reply[1]
        self._cursor = decoded(cursor)
        if not entries:
            return self._cursor != "0-0"
        entry_id, fields = entries[0]
        if not fields:  # trimmed away while pending
            await self.ack(entry_id)
            return True
        pending: Any = await self.redis.xpending_range(
            self.name, ADAPTERS_GROUP, min=entry_id, max=entry_id, count=1
        )
        deliveries = int(pending[0]["times_delivered"]) if pending else 1
        return Entry(id=entry_id, fields=fields, deliveries=deliveries)

    async def touch(self, entry_id: bytes) -> None:
        """Reset the entry's idle time, so that no peer takes it over while it runs."""
        await self.redis.xclaim(
            self.name, ADAPTERS_GROUP, self.consumer, 0, [entry_id], justid=True
        )

    async def ack(self, entry_id: bytes) -> None:
        await self.redis.xack(self.name, ADAPTERS_GROUP, entry_id)

    async def dead_letter(self, entry_id: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        """Copy the entry to the dead-letter stream with `reason`; the caller acknowledges
        it afterwards (a crash in between re-delivers rather than loses it)."""
        await dead_letter(
            self.redis,
            self.keys,
            stream=self.name,
            entry_id=entry_id,
            fields=fields,
            reason=reason,
            group=ADAPTERS_GROUP,
        )
