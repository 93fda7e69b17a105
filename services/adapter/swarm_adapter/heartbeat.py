"""The heartbeat beside a running attempt, split from the work so that it never blocks it:
cancel checks, lease renewal (`lease_holder`), fencing an attempt whose lease is lost
or about to lapse, a `task.heartbeat` event, and an `XCLAIM` touch of the attempt's stream
entry so that peers do not take it over."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from swarm_adapter.lease_holder import LeaseHolder
from swarm_adapter.running import Reporter, Running, about, log_context
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.task_stream import TaskStream
from swarm_common.messages import TaskHeartbeat, TaskMessage

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    """The heartbeats of one adapter's attempts (`beat` runs one attempt's)."""

    def __init__(
        self,
        *,
        settings: AdapterSettings,
        leases: LeaseHolder,
        tasks: TaskStream,
        reporter: Reporter,
    ) -> None:
        self.settings = settings
        self.leases = leases
        self.tasks = tasks
        self.worker = leases.worker
        self.reporter = reporter

    async def beat(self, running: Running) -> None:
        """Beside a whole attempt, until `running.finished`: cancel checks; every heartbeat,
        renew the lease, publish a heartbeat and keep the stream entry fresh (so peers do not
        take it over). A lease that is gone, or not renewed for half its length, fences the
        attempt: its agent is stopped before the reaper can hand the task to another worker.

        It ends on an event, not by cancellation: a cancel that meets a timeout can be
        swallowed (Python 3.11's `wait_for` and `timeout`), and a beat that outlived its
        attempt would keep renewing a lease nobody uses. Each Redis round runs as a task of
        its own with a deadline; one that hangs is abandoned."""
        message = running.message
        lease_s = self.settings.lease_s
        interval = min(self.settings.heartbeat_interval_s, lease_s / 3)
        poll = min(self.settings.cancel_poll_interval_s, interval)
        loop = asyncio.get_running_loop()
        renewed = loop.time()  # the claim took the lease just now
        # The first heartbeat goes out at the first poll: an attempt the orchestrator has
        # heard no heartbeat of is one whose worker died while starting it, and counts as a
        # failed start (`retry.lost_as`); a worker killed later is a lost attempt.
        last_beat = renewed - interval
        finished = asyncio.ensure_future(running.finished.wait())
        try:
            while not running.finished.is_set():
                await asyncio.wait([finished], timeout=poll)
                if running.finished.is_set():
                    return
                beat_due = loop.time() - last_beat >= interval
                if beat_due:
                    last_beat = loop.time()
                if await self._round(running, renew=beat_due, deadline_s=max(poll, lease_s / 4)):
                    renewed = last_beat
                if loop.time() - renewed > lease_s / 2 and not running.fenced:
                    running.fence("lease_expiring")
                    log.warning(
                        "lease not renewed for half its length; stopping the attempt",
                        extra=self._ctx(message, lease_s=lease_s),
                    )
        finally:
            finished.cancel()

    async def _round(self, running: Running, *, renew: bool, deadline_s: float) -> bool:
        """One Redis round as a task of its own, abandoned after `deadline_s`; True when it
        renewed the lease. A round that fails or hangs is logged, never raised."""
        message = running.message
        round_ = asyncio.ensure_future(self._exchange(running, renew=renew))
        done, _ = await asyncio.wait([round_], timeout=deadline_s)
        if not done:
            round_.cancel()
            log.warning("heartbeat timed out", extra=self._ctx(message))
            return False
        if (error := round_.exception()) is not None:
            log.warning("heartbeat failed", extra=self._ctx(message, error=repr(error)))
            return False
        return round_.result()

    async def _exchange(self, running: Running, *, renew: bool) -> bool:
        """Check for a cancel request; with `renew`, renew the lease (True when renewed),
        publish a heartbeat and touch the stream entry."""
        message = running.message
        reason = await self.reporter.cancel_request(message)
        if reason is not None:
            running.request_cancel(reason)
        if not renew:
            return False
        kept = await self.leases.renew(message)
        if not kept:
            running.fence("lease_lost")
            log.warning("attempt lost its lease; stopping it", extra=self._ctx(message))
        await self.reporter.publish(TaskHeartbeat(**about(message, self.worker)), retry=False)
        await self.tasks.touch(running.entry_id)
        return kept

    def _ctx(self, message: TaskMessage, **extra: Any) -> dict[str, Any]:
        return log_context(message, self.worker, **extra)
