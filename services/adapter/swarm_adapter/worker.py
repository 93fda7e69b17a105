"""The adapter (`Adapter`): its transport on Redis and its lifecycle.

Each of `concurrency` slots reads one task stream entry at a time (`task_stream`), and from
time to time takes over one that an adapter which died left pending. For each entry:
admit it or dead-letter it (`admission`; a refused entry that names an attempt fails it),
take the attempt's secret event key off the message (only `reporting` holds it, to prove
the attempt's events; the pipeline and the agent never see it), claim the attempt and take
its lease (`lease_holder`: a second claim of the same attempt is refused, so a message
delivered twice runs once), run it (`attempt`) with its heartbeat beside it (`heartbeat`),
publish the result event (`reporting`), and only then acknowledge.

Beside the slots run the upkeep loops (`upkeep`): the adapter obeys the system mode
(`swarm_common.system`: draining takes no new work, an emergency stop kills every agent at
once) and keeps its liveness key fresh. `stop()` (SIGTERM, see `main`) drains this adapter;
`emergency_stop()` (SIGUSR1) stops it at once. An adapter whose last attempts all failed at
start (`watchdog`: a broken agent CLI, a broken workspace) leaves rotation: it withdraws its
liveness key at once, then drains and stops (`leave_rotation`; `main` exits non-zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from swarm_adapter import noop, upkeep
from swarm_adapter.admission import Refused, admit
from swarm_adapter.attempt import AttemptPipeline
from swarm_adapter.heartbeat import Heartbeat
from swarm_adapter.lease_holder import LeaseHolder
from swarm_adapter.reporting import RedisReporter
from swarm_adapter.runners.base import Runner
from swarm_adapter.running import Running, about, log_context
from swarm_adapter.sandbox import Sandboxing, sandboxing_for
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.task_stream import Entry, TaskStream
from swarm_adapter.watchdog import StartWatch
from swarm_adapter.worktree import Worktrees
from swarm_common.backoff import Backoff, sleep
from swarm_common.capabilities import KIND_CAPABILITIES
from swarm_common.messages import (
    Message,
    TaskCancelled,
    TaskFailed,
    TaskMessage,
    WorkerOffline,
    WorkerOnline,
)
from swarm_common.procs import kill_strays
from swarm_common.redaction import Redactor, configured_secrets
from swarm_common.specs import NOOP_AGENT
from swarm_common.streams import Keys
from swarm_common.system import SystemMode
from swarm_common.text import decoded

__all__ = ["Adapter"]

log = logging.getLogger(__name__)


class Adapter:
    def __init__(
        self,
        *,
        settings: AdapterSettings,
        redis: Redis,
        runner: Runner,
        sandboxing: Sandboxing | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.runner = runner
        self.keys = Keys(settings.redis_prefix)
        self.stream = self.keys.tasks(settings.agent)
        self.worker = settings.worker_name
        self.tasks = TaskStream(redis=redis, keys=self.keys, name=self.stream, consumer=self.worker)
        self.worktrees = Worktrees(settings.workspace, pool_size=settings.worktree_pool)
        self.secrets = [*configured_secrets(os.environ), *runner.secrets]
        """What this adapter must never let out: its environment's secrets, its agent's key."""
        self.redact = Redactor(self.secrets)
        """One filter for everything this adapter publishes or writes: events (results,
        progress, gate tails), gate logs, and files before they are committed."""
        self._abandon = asyncio.Event()
        self.reporter = RedisReporter(
            redis=redis, keys=self.keys, redact=self.redact, abandon=self._abandon
        )
        """Where events go (through `redact`), and cancel requests come from."""
        self.sandboxing = sandboxing or sandboxing_for(settings, runner)
        """Where its attempts run (`sandbox`): detected at start unless given."""
        self.attempts = AttemptPipeline(
            settings=settings,
            worktrees=self.worktrees,
            sandboxing=self.sandboxing,
            runner=runner,
            redact=self.redact,
            secrets=self.secrets,
            reporter=self.reporter,
        )
        self.leases = LeaseHolder(
            redis=redis, keys=self.keys, worker=self.worker, lease_s=settings.lease_s
        )
        """The claims and leases of this adapter's attempts."""
        self.heartbeat = Heartbeat(
            settings=settings, leases=self.leases, tasks=self.tasks, reporter=self.reporter
        )
        self.counts: Counter[str] = Counter()
        self.starts = StartWatch(limit=settings.max_start_failures)
        """Its start failures in a row (`watchdog`)."""
        self.retired: str | None = None
        """Why it left rotation (`leave_rotation`); None while it serves."""
        self._withdrawn = False
        self._stopping = asyncio.Event()
        self._accepting = asyncio.Event()
        self._accepting.set()
        self.mode = SystemMode.RUNNING
        self._running: dict[tuple[uuid.UUID, int], Running] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def setup(self) -> None:
        await self.tasks.ensure_group()

    def stop(self) -> None:
        """Stop taking work; safe to call twice (from a signal handler, say)."""
        self._stopping.set()
        self._accepting.set()  # wake slots waiting for the mode to change, so they exit

    def leave_rotation(self) -> None:
        """Its last attempts all failed at start (`watchdog`): take no more work, withdraw
        the liveness key (`run`), hand back what it holds as a drain does, and say so in one
        line; `main` then exits with `watchdog.OUT_OF_ROTATION_EXIT`. Safe to call twice."""
        if self.retired is not None:
            return
        self.retired = self.redact(self.starts.last)[:500]
        log.error(
            "adapter leaves rotation: its last %d attempts all failed at start (last: %s); it "
            "takes no more tasks and exits. Check %s and the workspace (disk space, git) on "
            "this machine, then restart the adapter",
            self.starts.streak,
            self.retired,
            _what_to_check(self.settings.agent),
            extra={
                "worker": self.worker,
                "agent": self.settings.agent,
                "start_failures": self.starts.streak,
            },
        )
        self.stop()

    def emergency_stop(self, reason: str = "emergency stop") -> None:
        """SIGUSR1: kill every agent now, report the attempts cancelled (they run again
        elsewhere or later), and exit."""
        self.kill_all(reason)
        self.stop()

    def kill_all(self, reason: str) -> int:
        """Cancel every running attempt and kill its processes at once (no grace)."""
        for running in self.in_flight:
            running.request_cancel(reason)
            kill_strays(f"SWARM_WORKTREE={running.worktree}")
        if self._running:
            log.warning(
                "killed running attempts", extra={"count": len(self._running), "reason": reason}
            )
        return len(self._running)

    def obey(self, mode: SystemMode) -> None:
        """Follow the system mode: drain (take no new work), stop (kill everything now and
        take no work), run."""
        if mode != self.mode:
            log.warning("system mode changed", extra={"worker": self.worker, "mode": mode})
            self.mode = mode
            if mode == SystemMode.RUNNING:
                self._accepting.set()
            else:
                self._accepting.clear()
        if mode == SystemMode.STOPPED and self._running:
            self.kill_all("emergency stop")

    def announcement(self) -> WorkerOnline:
        """What this adapter can do, said when it comes online (and kept in its liveness
        key): kind, models, concurrency, CLI version, capabilities."""
        capabilities = getattr(self.runner, "capabilities", None)
        if capabilities is None:
            capabilities = KIND_CAPABILITIES.get(self.settings.agent, frozenset())
        return WorkerOnline(
            worker=self.worker,
            agent=self.settings.agent,
            host=socket.gethostname(),
            pid=os.getpid(),
            concurrency=self.settings.concurrency,
            models=self.settings.announced_models,
            cli_version=getattr(self.runner, "version", None),
            capabilities=sorted(capabilities),
        )

    def stopping(self) -> bool:
        """`stop()` was called: take no more work."""
        return self._stopping.is_set()

    @property
    def in_flight(self) -> list[Running]:
        """The attempts this adapter runs now."""
        return list(self._running.values())

    async def run(self) -> None:
        """Serve until `stop()`, then drain: running attempts get `shutdown_grace_s` to
        finish, then are cancelled (and reported `task.cancelled`, so they run again). Out
        of rotation (`leave_rotation`), it withdraws its liveness key before it drains."""
        await self._until_ready()
        await self.reporter.publish(self.announcement(), retry=False)
        loops = []
        if self.settings.agent == NOOP_AGENT:  # one batched loop stands for every slot
            slots = [asyncio.create_task(noop.serve(self), name="noop")]
        else:
            slots = [
                asyncio.create_task(self._consume_loop(), name=f"slot-{i}")
                for i in range(self.settings.concurrency)
            ]
            loops.append(asyncio.create_task(upkeep.tend_worktrees(self), name="worktrees"))
        registry = asyncio.create_task(upkeep.advertise(self), name="registry")
        control = asyncio.create_task(upkeep.follow_mode(self), name="control")
        log.info(
            "adapter started",
            extra={
                "worker": self.worker,
                "agent": self.settings.agent,
                "concurrency": self.settings.concurrency,
            },
        )
        await self._stopping.wait()
        if self.retired is not None:  # its slots count no more, even while it drains
            await self._withdraw(registry)
        await self._drain(slots)
        for task in (control, *loops):
            task.cancel()
            await _settle(task)
        if self.settings.agent != NOOP_AGENT:  # worktrees given back: cleaned or removed
            await self.worktrees.idle(10)
        await self._withdraw(registry)
        log.info("adapter stopped", extra={"worker": self.worker, **self.counts})

    async def _withdraw(self, registry: asyncio.Task[None]) -> None:
        """Stop advertising: the liveness key goes, `worker.offline` goes out (once)."""
        if self._withdrawn:
            return
        self._withdrawn = True
        registry.cancel()
        await _settle(registry)
        await self.reporter.publish(WorkerOffline(worker=self.worker), retry=False)
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(self.keys.worker(self.worker))

    async def _until_ready(self) -> None:
        backoff = Backoff(base_s=0.5, cap_s=10.0)
        while True:
            try:
                await self.setup()
                return
            except (RedisError, OSError) as exc:
                log.warning("waiting for Redis", extra={"error": repr(exc)})
                await backoff.wait()

    async def _drain(self, slots: list[asyncio.Task[None]]) -> None:
        _, pending = await asyncio.wait(slots, timeout=self.settings.shutdown_grace_s)
        if pending:
            for running in self.in_flight:
                running.request_cancel("adapter shutting down")
            _, pending = await asyncio.wait(pending, timeout=self.settings.kill_grace_s + 30)
        if pending:
            self._abandon.set()
            for slot in pending:
                slot.cancel()
            _, pending = await asyncio.wait(pending, timeout=10)
            if pending:
                log.warning("slots do not end; exiting without them", extra={"count": len(pending)})

    # -- consuming -------------------------------------------------------------------------

    async def _consume_loop(self) -> None:
        await self.consume(
            take=lambda: self.process_next(block_ms=self.settings.read_block_ms),
            reclaim=self.reclaim,
        )

    async def consume(
        self,
        *,
        take: Callable[[], Awaitable[object]],
        reclaim: Callable[[], Awaitable[bool]],
    ) -> None:
        """One slot's loop until `stop()`: while the system mode lets this adapter work,
        `take` work (one entry, or a `noop` batch), and every half `claim_idle_ms` `reclaim`
        what vanished peers left pending, until none is left. Redis failures back off; any
        other failure is logged and the loop goes on."""
        backoff = Backoff(base_s=0.5, cap_s=10.0)
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time() + self.settings.claim_idle_ms / 2000
        while not self._stopping.is_set():
            try:
                await self._accepting.wait()
                if self._stopping.is_set():
                    break
                if loop.time() >= next_reclaim:
                    if not await reclaim():
                        next_reclaim = loop.time() + self.settings.claim_idle_ms / 2000
                    continue
                await take()
                backoff.succeeded()
            except (RedisError, OSError) as exc:
                delay = backoff.failed()
                log.warning(
                    "cannot read tasks; retrying", extra={"error": repr(exc), "retry_in_s": delay}
                )
                await sleep(delay)
            except Exception:
                log.exception("task handling failed; continuing", extra={"worker": self.worker})
                await backoff.wait()

    async def process_next(self, *, block_ms: int | None) -> bool:
        """Read and handle one message; False when there was none (after `block_ms`)."""
        entry = await self.tasks.read(block_ms=block_ms)
        if entry is None:
            return False
        await self.handle(entry.id, entry.fields)
        return True

    async def reclaim(self) -> bool:
        """Take over one entry another consumer (an adapter that died) left pending for
        `claim_idle_ms`, and handle it; False when there was none (and no more to scan)."""
        entry = await self.tasks.take_over(min_idle_ms=self.settings.claim_idle_ms)
        if not isinstance(entry, Entry):
            return entry
        log.info(
            "took over a pending task message",
            extra={"entry_id": decoded(entry.id), "deliveries": entry.deliveries},
        )
        self.counts["reclaimed"] += 1
        await self.handle(entry.id, entry.fields, deliveries=entry.deliveries)
        return True

    async def process_available(self) -> int:
        """Burst mode (tests, one-shot runs): handle every waiting message, then return."""
        handled = 0
        while await self.process_next(block_ms=None):
            handled += 1
        return handled

    async def handle(
        self, entry_id: bytes, fields: dict[bytes, bytes], *, deliveries: int = 1
    ) -> None:
        """One task stream entry, to its acknowledgement: admit it (or dead-letter it), claim
        its attempt (a duplicate delivery is dropped), run it, report, acknowledge."""
        message = admit(
            fields, deliveries=deliveries, settings=self.settings, worktrees=self.worktrees
        )
        if isinstance(message, Refused):
            await self.dead(entry_id, fields, message.reason, failing=message.failing)
            return
        key, message = message.event_key, message.model_copy(update={"event_key": None})
        if not await self._claim(entry_id, message):
            return
        if not key:
            log.warning(
                "task message without an event key; its events go out unproven",
                extra=self._ctx(message),
            )
        self.reporter.hold_key(message, key)
        running = Running(
            message=message,
            entry_id=entry_id,
            worktree=self.worktrees.path(message),
            deliveries=deliveries,
        )
        self._running[(message.task_id, message.attempt)] = running
        try:
            outcome = await self._attempt(running)
            await self._report(running, outcome)
            if self.starts.note(outcome):
                self.leave_rotation()
        finally:
            self.reporter.release_key(message)
            del self._running[(message.task_id, message.attempt)]
            await self._cleanup(message)

    async def _claim(self, entry_id: bytes, message: TaskMessage) -> bool:
        """Claim the attempt and take its lease; False when it was claimed before (a
        duplicate delivery: acknowledged and dropped)."""
        if await self.leases.claim(message):
            return True
        holder = await self.redis.get(self.keys.claim(message.task_id, message.attempt))
        log.info(
            "attempt already claimed; duplicate delivery dropped",
            extra=self._ctx(message, holder=decoded(holder or b"")),
        )
        self.counts["duplicate"] += 1
        await self.tasks.ack(entry_id)
        return False

    async def _attempt(self, running: Running) -> Message:
        """The attempt's result, its heartbeat beside it until the work is over."""
        beat = asyncio.create_task(self.heartbeat.beat(running))
        try:
            return await self._execute(running)
        except Exception as exc:  # a bug or an unforeseen failure: report, never hang
            log.exception("attempt failed in the adapter", extra=self._ctx(running.message))
            return TaskFailed(
                **about(running.message, self.worker),
                reason="adapter_error",
                error=f"{type(exc).__name__}",
            )
        finally:
            running.finished.set()
            await _settle(beat)

    async def _execute(self, running: Running) -> Message:
        """Run the attempt, unless it was read as the adapter stopped or the system mode
        changed: then it is handed back, unstarted."""
        common = about(running.message, self.worker)
        if self._stopping.is_set():
            return TaskCancelled(**common, reason="adapter shutting down")
        if self.mode != SystemMode.RUNNING:
            return TaskCancelled(**common, reason=f"system {self.mode}")
        return await self.attempts.run(running)

    async def _report(self, running: Running, outcome: Message) -> None:
        """Store the result event, release the claim, and only then acknowledge."""
        message = running.message
        await self.reporter.publish(outcome)
        self.counts[outcome.TYPE] += 1
        await self.leases.finish(message)
        await self.tasks.ack(running.entry_id)
        log.info("attempt reported", extra=self._ctx(message, event=outcome.TYPE))

    async def dead(
        self,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        reason: str,
        *,
        failing: TaskMessage | None = None,
    ) -> None:
        """Move an entry to the dead-letter stream; with `failing`, also fail that attempt
        (`dead_lettered`, never retried) so its task does not wait for it forever."""
        await self.tasks.dead_letter(entry_id, fields, reason)
        if failing is not None:
            error = f"the task message was dead-lettered ({reason}); see {self.keys.dead}"
            await self.reporter.publish(
                TaskFailed(**about(failing, self.worker), reason="dead_lettered", error=error),
                key=failing.event_key,
            )
        await self.tasks.ack(entry_id)
        self.counts["dead"] += 1

    async def _cleanup(self, message: TaskMessage) -> None:
        try:
            await self.worktrees.remove(message)
        except Exception:
            log.exception("worktree cleanup failed", extra=self._ctx(message))

    def _ctx(self, message: TaskMessage, **extra: Any) -> dict[str, Any]:
        return log_context(message, self.worker, **extra)


def _what_to_check(agent: str) -> str:
    """Where a start failure of `agent` comes from, for the line that says it left rotation."""
    if agent == "shell":
        return "bash (on PATH)"
    return (
        f"the {agent} CLI (SWARM_{agent.upper()}_PATH or on PATH: does `--version` run? a "
        "missing library?) and its API key"
    )


async def _settle(task: asyncio.Task[Any], timeout_s: float = 5.0) -> None:
    """Wait for `task` to end (cancelling it if it does not), never forever: a task that
    swallowed its cancellation is left behind with a warning rather than hang its caller."""
    done, _ = await asyncio.wait([task], timeout=timeout_s)
    if not done:
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=timeout_s)
    if not done:
        log.warning("a background task does not end; left behind", extra={"task": task.get_name()})
    elif not task.cancelled() and task.exception() is not None:
        log.warning("a background task failed", extra={"error": repr(task.exception())})
