"""The orchestrator's background loops (relay, event consumer, reaper, merge queue,
checkpoints, scheduler sweep, session cancels, workspace pruning, the adapters' registry,
webhooks) and their lifecycle. `stop()` is safe to
call twice: it signals, waits a grace period, then cancels.

Each loop also has a one-shot method (`sweep_once`, `reap_once`, `merge_once`,
`checkpoints_once`, `cancel_once`, `prune_once`, `registry_once`, `webhooks_fan_out_once`,
`webhooks.send_once`) that tests and tools call to run a step in the foreground.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.backoff import Backoff, sleep
from swarm_common.redaction import Redactor, configured_secrets
from swarm_common.streams import Keys
from swarm_orchestrator.graph import budgets, cancelling, scheduler
from swarm_orchestrator.graph.retry import RetryPolicy
from swarm_orchestrator.integration import merges, prune
from swarm_orchestrator.integration.checkpoint_pool import CheckpointPool
from swarm_orchestrator.planning.plans import PlanLimits
from swarm_orchestrator.runtime.consumer import EventConsumer
from swarm_orchestrator.runtime.dispatch import Dispatcher
from swarm_orchestrator.runtime.failures import log_retry
from swarm_orchestrator.runtime.reaper import Reaper
from swarm_orchestrator.runtime.registry import Registry
from swarm_orchestrator.runtime.relay import Relay
from swarm_orchestrator.settings import OrchestratorSettings
from swarm_orchestrator.webhooks import fanout
from swarm_orchestrator.webhooks.sender import Sender

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
        """Set when outbox rows were committed: the relay publishes them."""
        self.merge_wake = asyncio.Event()
        """Set when tasks may have joined the merge queue."""
        self.checkpoint_wake = asyncio.Event()
        self.cancel_wake = asyncio.Event()
        """Set when a session's cancel left tasks to the background."""
        self.sweep_wake = asyncio.Event()
        """Set after a request stored more ready tasks than it queued (`graph.sessions`)."""
        self.checkpoints = CheckpointPool(
            sessionmaker=sessionmaker, settings=settings, on_done=self.checkpoint_wake.set
        )
        policy = RetryPolicy.from_settings(settings)
        self.relay = Relay(
            sessionmaker=sessionmaker,
            redis=redis,
            keys=keys,
            batch=settings.relay_batch,
            maxlen=settings.stream_maxlen,
            dispatch=Dispatcher(
                headroom=settings.dispatch_headroom, tenant_weights=settings.tenant_weights
            ),
        )
        self.consumer = EventConsumer(
            sessionmaker=sessionmaker,
            redis=redis,
            keys=keys,
            consumer=settings.consumer_name,
            batch=settings.consumer_batch,
            claim_idle_ms=settings.consumer_claim_idle_ms,
            max_deliveries=settings.event_max_deliveries,
            policy=policy,
            plan_limits=PlanLimits.from_settings(settings),
            on_commit=self._events_applied,
        )
        self.reaper = Reaper(
            sessionmaker=sessionmaker,
            redis=redis,
            keys=keys,
            policy=policy,
            on_transport_lost=self.relay.forget_groups,
        )
        self.registry = Registry(
            sessionmaker=sessionmaker, redis=redis, keys=keys, grace_s=settings.suspend_grace_s
        )
        self.webhooks = Sender(
            sessionmaker=sessionmaker,
            settings=settings,
            redact=Redactor([*configured_secrets(os.environ), *settings.secrets()]),
        )
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self._tasks:
            return
        s = self._settings
        never = asyncio.Event()  # loops that only run on their interval
        loops = {
            "relay": self.relay.run(
                stop=self._stop,
                wake=self.wake,
                poll_s=s.relay_poll_interval_s,
                retention_s=s.outbox_retention_s,
            ),
            "consumer": self.consumer.run(stop=self._stop, block_ms=s.consumer_block_ms),
            "sweep": self._loop("sweep", self.sweep_once, self.sweep_wake, s.sweep_interval_s),
            "reaper": self._loop("reaper", self.reap_once, never, s.reaper_interval_s),
            "merge": self._loop("merge", self.merge_once, self.merge_wake, s.sweep_interval_s),
            "checkpoints": self._loop(
                "checkpoint", self._start_checkpoints, self.checkpoint_wake, s.sweep_interval_s
            ),
            "cancel": self._loop("cancel", self.cancel_once, self.cancel_wake, s.sweep_interval_s),
            "prune": self._loop("prune", self.prune_once, never, s.prune_interval_s),
            "registry": self._loop("registry", self.registry_once, never, s.registry_interval_s),
            "webhook-fanout": self._loop(
                "webhook fan-out", self.webhooks_fan_out_once, never, s.webhook_interval_s
            ),
            "webhooks": self.webhooks.run(self._stop),
            "webhook-prune": self._loop(
                "webhook prune", self.webhooks.prune_once, never, s.prune_interval_s
            ),
        }
        self._tasks = [
            asyncio.create_task(run, name=f"swarm-{name}") for name, run in loops.items()
        ]

    async def sweep_once(self) -> int:
        """Tenant budgets applied (sessions idle when their tenant's ran out learn of it
        here), then what became ready queued."""
        held = await budgets.enforce_tenants(self._sessionmaker, keys=self._keys)
        queued = await scheduler.sweep(self._sessionmaker, keys=self._keys)
        if queued or held:
            self.wake.set()
        return queued

    async def cancel_once(self) -> int:
        """A chunk of each session whose cancel goes on (`graph.cancelling`)."""
        cancelled = await cancelling.cancel_pending(self._sessionmaker, keys=self._keys)
        if cancelled:
            self.wake.set()  # cancel requests in the outbox
        return cancelled

    async def reap_once(self) -> int:
        lost = await self.reaper.reap_once()
        if lost:
            self.wake.set()
        return lost

    def _events_applied(self) -> None:
        self.wake.set()
        self.merge_wake.set()

    async def merge_once(self) -> int:
        merged = await merges.merge_pending(
            self._sessionmaker, workspace=self._settings.workspace, keys=self._keys
        )
        if merged:
            self.wake.set()
            self.checkpoint_wake.set()  # a session's last merge asks for its final checkpoint
        return merged

    async def checkpoints_once(self) -> int:
        """Run every checkpoint that may run now, to its end."""
        return await self.checkpoints.run_due()

    async def _start_checkpoints(self) -> int:
        return len(await self.checkpoints.fill())

    async def registry_once(self) -> int:
        """Mirror the adapters' liveness keys; suspend, resume and reroute as they say."""
        changed = await self.registry.pass_once()
        if changed:
            self.wake.set()
        return 0  # the next pass waits for its interval: the keys change no faster

    async def webhooks_fan_out_once(self) -> int:
        """New timeline entries → webhook deliveries; the sender is woken for them."""
        read, made = await fanout.fan_out_once(self._sessionmaker)
        if made:
            self.webhooks.wake.set()
        return read

    async def prune_once(self) -> int:
        return await prune.prune_workspace(self._sessionmaker, workspace=self._settings.workspace)

    async def _loop(
        self, name: str, step: Callable[[], Awaitable[int]], wake: asyncio.Event, interval: float
    ) -> None:
        """Run `step` whenever `wake` is set or `interval` passed; again at once while it
        finds work; back off (logging) on errors."""
        backoff = Backoff(base_s=0.5, cap_s=30.0)
        while not self._stop.is_set():
            wake.clear()
            try:
                busy = await step()
                backoff.succeeded()
            except Exception as exc:
                busy = 0
                delay = backoff.failed()
                log_retry(log, f"{name} loop", exc, delay)
                await sleep(delay, self._stop)
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(self._stop, wake), timeout=interval)

    async def stop(self, grace_s: float = 5.0) -> None:
        self._stop.set()
        await self.checkpoints.stop()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
