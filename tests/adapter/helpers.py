"""Helpers shared by the adapter tests: a session mirror, task messages, sending them and
reading the events back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from swarm_adapter.worker import Adapter
from swarm_common.messages import Message, TaskMessage
from swarm_common.streams import ADAPTERS_GROUP, Keys, decode, encode

__all__ = ["Mirror", "events", "message", "pending", "send"]


@dataclass
class Mirror:
    session_id: uuid.UUID
    path: Path
    base: str


def message(
    mirror: Mirror, prompt: str, *, key: str = "t1", attempt: int = 1, **extra: Any
) -> TaskMessage:
    fields: dict[str, Any] = {
        "session_id": mirror.session_id,
        "task_id": uuid.uuid4(),
        "task_key": key,
        "attempt": attempt,
        "agent": "shell",
        "title": f"Task {key}",
        "prompt": prompt,
        "repo": f"repos/{mirror.session_id}.git",
        "base_commit": mirror.base,
        "branch": f"swarm/{mirror.session_id}/task/{key}",
        "timeout_s": 30,
    }
    fields.update(extra)
    return TaskMessage(**fields)


async def send(redis: Redis, keys: Keys, adapter: Adapter, msg: Message) -> None:
    await adapter.setup()
    await redis.xadd(keys.tasks("shell"), encode(msg))  # type: ignore[arg-type]


async def events(redis: Redis, keys: Keys, *, heartbeats: bool = False) -> list[Any]:
    """Every event so far, as messages (typed `Any`: tests read each type's own fields).
    Heartbeats come every `heartbeat_interval_s` of a running attempt, so how many depends
    on the machine's speed: they are left out unless asked for."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(keys.events)  # type: ignore[assignment]
    messages = [decode(fields).message for _, fields in entries]
    return [m for m in messages if heartbeats or m.TYPE != "task.heartbeat"]


async def pending(redis: Redis, keys: Keys) -> int:
    """Task messages read but not acknowledged."""
    return int((await redis.xpending(keys.tasks("shell"), ADAPTERS_GROUP))["pending"])
