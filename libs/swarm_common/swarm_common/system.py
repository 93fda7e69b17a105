"""The system mode, set by the orchestrator (`POST /v1/system/drain|stop|resume`, SIGUSR1)
and obeyed by every adapter.

- `running`: adapters take work.
- `draining`: adapters take no new work and finish what they run.
- `stopped`: emergency stop. Adapters kill their agents at once, report the attempts
  cancelled (so they run again later), and take no work.

PostgreSQL keeps the mode; the orchestrator mirrors it to the `control` key, which adapters
poll. A Redis that lost its data gets it back on the reaper's next pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from redis.asyncio import Redis

from swarm_common.messages import utcnow
from swarm_common.streams import Keys

__all__ = ["SystemMode", "SystemState", "publish_mode", "read_mode"]


class SystemMode(StrEnum):
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass(frozen=True)
class SystemState:
    mode: SystemMode
    by: str = ""
    at: datetime | None = None

    def to_json(self) -> str:
        at = (self.at or utcnow()).isoformat()
        return json.dumps({"mode": self.mode.value, "by": self.by, "at": at})


async def publish_mode(
    redis: Redis, keys: Keys, state: SystemState, *, unless_newer: bool = False
) -> bool:
    """Write the mode for the adapters; with `unless_newer`, leave a mode set later in place
    (the reaper re-publishing what it read a moment ago must not undo a change made since).
    Returns whether it wrote."""
    if unless_newer and (raw := await redis.get(keys.control)) is not None:
        try:
            current: datetime | None = datetime.fromisoformat(json.loads(raw)["at"])
        except (ValueError, KeyError, TypeError):
            current = None
        if state.at is None or (current is not None and current >= state.at):
            return False
    await redis.set(keys.control, state.to_json())
    return True


async def read_mode(redis: Redis, keys: Keys) -> SystemMode:
    """The mode adapters obey; `running` when the key is missing or unreadable (a stop that
    Redis forgot comes back with the reaper's next pass)."""
    raw = await redis.get(keys.control)
    if raw is None:
        return SystemMode.RUNNING
    try:
        return SystemMode(json.loads(raw)["mode"])
    except (ValueError, KeyError, TypeError):
        return SystemMode.RUNNING
