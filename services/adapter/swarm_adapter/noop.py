"""The `noop` kind: join and milestone nodes, completed in-process (`swarm_common.specs`,
`NOOP_AGENT`). No worktree, no agent, no claim or lease: running one twice does nothing
twice, and the orchestrator applies a result delivered twice once.

One loop (`serve`) stands for all of the adapter's `concurrency` slots and works in
batches: it reads up to `concurrency` entries at once, reads their cancel requests in one
round trip, publishes one report per attempt in one pipeline (`task.succeeded` with the
attempt's start in it, `Began`, not a `task.started` report of its own; `task.cancelled`
for an attempt cancelled before it started), each proven with its attempt's key
(`swarm_common.proofs`), and only then acknowledges the batch. A crash before the
acknowledgement leaves the entries pending; a peer takes them over (`XAUTOCLAIM`) and
reports them again, which the orchestrator recognises as the same attempt's report. An
entry refused by `admission` is dead-lettered as the other kinds do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from swarm_adapter.admission import Refused, admit
from swarm_adapter.running import about
from swarm_adapter.task_stream import Entry
from swarm_common.messages import (
    Began,
    Message,
    TaskCancelled,
    TaskMessage,
    TaskSucceeded,
    utcnow,
)
from swarm_common.specs import NOOP_AGENT
from swarm_common.streams import ADAPTERS_GROUP
from swarm_common.system import SystemMode
from swarm_common.text import decoded

if TYPE_CHECKING:
    from swarm_adapter.worker import Adapter

__all__ = ["NoopRunner", "serve"]

log = logging.getLogger(__name__)


class NoopRunner:
    """The `noop` kind's runner: it has nothing to run (`serve` completes its tasks)."""

    agent: ClassVar[str] = NOOP_AGENT
    capabilities: ClassVar[frozenset[str]] = frozenset()
    version: str | None = None

    @property
    def secrets(self) -> list[str]:
        return []

    async def check(self) -> None:
        return None

    def model_apis(self) -> list[str]:
        return []

    def sandbox_paths(self) -> list[Path]:
        return []

    async def run(self, ctx: Any) -> Any:  # pragma: no cover - never called
        raise NotImplementedError("noop tasks are completed by swarm_adapter.noop.serve")


async def serve(adapter: Adapter) -> None:
    """Complete `noop` tasks until the adapter stops, in batches of its concurrency."""
    await adapter.consume(
        take=lambda: process_batch(adapter, block_ms=adapter.settings.read_block_ms),
        reclaim=lambda: reclaim(adapter),
    )


async def process_batch(adapter: Adapter, *, block_ms: int | None) -> int:
    """Read up to `concurrency` new entries and complete them; return how many were read."""
    entries = await adapter.tasks.read_many(adapter.settings.concurrency, block_ms=block_ms)
    await complete(adapter, entries)
    return len(entries)


async def reclaim(adapter: Adapter) -> bool:
    """Take over entries a vanished peer left pending and complete them; False when there
    were none (and no more to scan)."""
    taken = await adapter.tasks.take_over(min_idle_ms=adapter.settings.claim_idle_ms)
    if not isinstance(taken, Entry):
        return taken
    adapter.counts["reclaimed"] += 1
    await complete(adapter, [taken])
    return True


async def complete(adapter: Adapter, entries: list[Entry]) -> None:
    """Report every admitted entry started and ended, then acknowledge them all."""
    if not entries:
        return
    admitted: list[tuple[Entry, TaskMessage, str | None]] = []
    for entry in entries:
        message = admit(
            entry.fields,
            deliveries=entry.deliveries,
            settings=adapter.settings,
            worktrees=adapter.worktrees,
        )
        if isinstance(message, Refused):
            await adapter.dead(entry.id, entry.fields, message.reason, failing=message.failing)
            continue
        key = message.event_key
        admitted.append((entry, message.model_copy(update={"event_key": None}), key))
    if admitted:
        cancels = await adapter.redis.mget(
            [adapter.keys.cancel(m.task_id, m.attempt) for _, m, _ in admitted]
        )
        pipe = adapter.redis.pipeline(transaction=False)
        for (entry, message, key), cancel in zip(admitted, cancels, strict=True):
            for event in _events(adapter, message, entry.deliveries, cancel):
                adapter.reporter.stage(pipe, event, key=key)
                adapter.counts[event.TYPE] += 1
        await pipe.execute()
    await adapter.redis.xack(adapter.stream, ADAPTERS_GROUP, *[e.id for e in entries])


def _events(
    adapter: Adapter, message: TaskMessage, deliveries: int, cancel: bytes | str | None
) -> list[Message]:
    common = about(message, adapter.worker)
    if cancel is not None:
        return [TaskCancelled(**common, reason=decoded(cancel)[:500])]
    if adapter.mode != SystemMode.RUNNING or adapter.stopping():
        return [TaskCancelled(**common, reason=f"system {adapter.mode}")]
    began = Began(
        at=utcnow(), branch=message.branch, base_commit=message.base_commit, deliveries=deliveries
    )
    ended = utcnow()
    duration = round((ended - began.at).total_seconds(), 6)
    return [TaskSucceeded(**common, at=ended, began=began, exit_code=0, duration_s=duration)]
