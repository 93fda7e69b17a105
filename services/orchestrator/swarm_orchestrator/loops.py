"""The orchestrator's background loops (relay, event consumer, scheduler sweep) and their
lifecycle. `stop()` is safe to call twice: it signals, waits a grace period, then cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.streams import Keys
from swarm_orchestrator import scheduler
from swarm_orchestrator.consumer import EventConsumer
from swarm_orchestrator.events import RetryPolicy
from swarm_orchestrator.failures import is_transient
from swarm_orchestrator.outbox import Relay
from swarm_orchestrator.settings import OrchestratorSettings

__all__ = ["Background"]

log = logging.getLogger(__name__)


class Background:
    def __init__(
        self,
        *,
        settings: OrchestratorSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        keys: Keys,
    ) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._keys = keys
        self._stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.relay = Relay(
            sessionmaker=sessionmaker,
            redis=redis,
            keys=keys,
            batch=settings.relay_batch,
            maxlen=settings.stream_maxlen,
        )
        self.consumer = EventConsumer(
            sessionmaker=sessionmaker,
            redis=redis,
            keys=keys,
            consumer=settings.consumer_name,
            batch=settings.consumer_batch,
            claim_idle_ms=settings.consumer_claim_idle_ms,
            policy=RetryPolicy(),
            on_commit=self.wake.set,
        )
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self._tasks:
            return
        s = self._settings
        self._tasks = [
            asyncio.create_task(
                self.relay.run(
                    stop=self._stop,
                    wake=self.wake,
                    poll_s=s.relay_poll_interval_s,
                    retention_s=s.outbox_retention_s,
                ),
                name="swarm-relay",
            ),
            asyncio.create_task(
                self.consumer.run(stop=self._stop, block_ms=s.consumer_block_ms),
                name="swarm-consumer",
            ),
            asyncio.create_task(self._sweep_loop(), name="swarm-sweep"),
        ]

    async def _sweep_loop(self) -> None:
        interval = self._settings.sweep_interval_s
        while not self._stop.is_set():
            try:
                if await scheduler.sweep(self._sessionmaker, keys=self._keys):
                    self.wake.set()
            except Exception as exc:
                if is_transient(exc):
                    log.warning(
                        "scheduler sweep waiting for the database", extra={"error": repr(exc)}
                    )
                else:
                    log.exception("scheduler sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)

    async def stop(self, grace_s: float = 5.0) -> None:
        self._stop.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
