"""The adapter's consumer loop: one task message at a time per slot, from claim to ack.

For each message: decode (bad ones, and ones naming no repository of the workspace, go to
the dead-letter stream), claim the attempt and take its lease (`swarm_common.leases`: a
second claim of the same attempt is refused, so a message delivered twice runs once), emit
`task.started`, prepare the worktree (setup files and command, see `preparation`), run the
agent, check that nothing was written outside the worktree (`escape`: a failure with
`workspace_escape`, nothing committed), commit, run the quality gates on the commit (and
check again), emit the result event, and only then acknowledge. Beside the whole attempt
runs its heartbeat: cancel checks, lease renewal (an attempt whose lease is lost or about to
lapse stops and commits nothing), and keeping the stream entry fresh so that peers do not
take it over.

Each slot also takes over, with `XAUTOCLAIM`, entries that adapters which died left
pending; an entry delivered more than `max_deliveries` times is dead-lettered and its task
failed. The adapter obeys the system mode (`swarm_common.system`): draining takes no new
work, an emergency stop kills every agent at once. SIGTERM drains this adapter; SIGUSR1
stops it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from swarm_adapter import escape
from swarm_adapter.preparation import SetupError, copy_setup_files, merge_in, unresolved, untracked
from swarm_adapter.progress import ProgressBatcher
from swarm_adapter.runners.base import RunContext, Runner, RunResult, task_env
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worktree import Commit, WorktreeError, Worktrees
from swarm_common import git, leases
from swarm_common.gates import (
    GateCommand,
    GateMode,
    GateResult,
    blocking_failures,
    plan_gates,
    run_gates,
)
from swarm_common.messages import (
    Message,
    TaskCancelled,
    TaskFailed,
    TaskHeartbeat,
    TaskMessage,
    TaskProgress,
    TaskStarted,
    TaskSucceeded,
    WorkerOffline,
    WorkerOnline,
    utcnow,
)
from swarm_common.procs import kill_strays
from swarm_common.redaction import Redactor, configured_secrets
from swarm_common.session_settings import SessionSettings
from swarm_common.streams import ADAPTERS_GROUP, DecodeError, Keys, dead_letter, decode, encode
from swarm_common.streams import ensure_group as _ensure_group
from swarm_common.system import SystemMode, read_mode
from swarm_common.text import clean, clean_text

__all__ = ["Adapter"]

log = logging.getLogger(__name__)

CLAIM_DONE_TTL_S = 7 * 24 * 3600
EVENTS_MAXLEN = 1_000_000


@dataclass
class _Running:
    message: TaskMessage
    entry_id: bytes
    worktree: Path
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str = ""
    fenced: bool = False
    """The lease is lost: another attempt may own the task now; commit nothing."""
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    """The attempt's work is over: its heartbeat stops."""

    def request_cancel(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()

    def fence(self, reason: str) -> None:
        self.fenced = True
        self.request_cancel(reason)


class Adapter:
    def __init__(self, *, settings: AdapterSettings, redis: Redis, runner: Runner) -> None:
        self.settings = settings
        self.redis = redis
        self.runner = runner
        self.keys = Keys(settings.redis_prefix)
        self.stream = self.keys.tasks(settings.agent)
        self.worker = settings.worker_name
        self.worktrees = Worktrees(settings.workspace)
        self.secrets = [*configured_secrets(os.environ), *runner.secrets]
        """What this adapter must never let out: its environment's secrets, its agent's key."""
        self.redact = Redactor(self.secrets)
        """One filter for everything this adapter publishes or writes: events (results,
        progress, gate tails), gate logs, and files before they are committed."""
        self.counts: Counter[str] = Counter()
        self._stopping = asyncio.Event()
        self._abandon = asyncio.Event()
        self._accepting = asyncio.Event()
        self._accepting.set()
        self.mode = SystemMode.RUNNING
        self._running: dict[tuple[uuid.UUID, int], _Running] = {}
        self._reclaim_cursor = "0-0"

    # -- lifecycle -------------------------------------------------------------------------

    async def setup(self) -> None:
        await _ensure_group(self.redis, self.stream, ADAPTERS_GROUP)

    def stop(self) -> None:
        """Stop taking work; safe to call twice (from a signal handler, say)."""
        self._stopping.set()
        self._accepting.set()  # wake slots waiting for the mode to change, so they exit

    def emergency_stop(self, reason: str = "emergency stop") -> None:
        """SIGUSR1: kill every agent now, report the attempts cancelled (they run again
        elsewhere or later), and exit."""
        self.kill_all(reason)
        self.stop()

    def kill_all(self, reason: str) -> int:
        """Cancel every running attempt and kill its processes at once (no grace)."""
        for running in list(self._running.values()):
            running.request_cancel(reason)
            kill_strays(f"SWARM_WORKTREE={running.worktree}")
        if self._running:
            log.warning(
                "killed running attempts", extra={"count": len(self._running), "reason": reason}
            )
        return len(self._running)

    async def run(self) -> None:
        """Serve until `stop()`, then drain: running attempts get `shutdown_grace_s` to
        finish, then are cancelled (and reported `task.cancelled`, so they run again)."""
        await self._until_ready()
        await self._publish(
            WorkerOnline(
                worker=self.worker,
                agent=self.settings.agent,
                host=socket.gethostname(),
                pid=os.getpid(),
                concurrency=self.settings.concurrency,
            ),
            retry=False,
        )
        slots = [
            asyncio.create_task(self._consume_loop(), name=f"slot-{i}")
            for i in range(self.settings.concurrency)
        ]
        registry = asyncio.create_task(self._registry_loop(), name="registry")
        control = asyncio.create_task(self._control_loop(), name="control")
        log.info(
            "adapter started",
            extra={
                "worker": self.worker,
                "agent": self.settings.agent,
                "concurrency": self.settings.concurrency,
            },
        )
        await self._stopping.wait()
        await self._drain(slots)
        for helper in (registry, control):
            helper.cancel()
            await _settle(helper)
        await self._publish(WorkerOffline(worker=self.worker), retry=False)
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(self.keys.worker(self.worker))
        log.info("adapter stopped", extra={"worker": self.worker, **self.counts})

    async def _until_ready(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.setup()
                return
            except (RedisError, OSError) as exc:
                log.warning("waiting for Redis", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _drain(self, slots: list[asyncio.Task[None]]) -> None:
        _, pending = await asyncio.wait(slots, timeout=self.settings.shutdown_grace_s)
        if pending:
            for running in list(self._running.values()):
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
        delay = 0.5
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time() + self.settings.claim_idle_ms / 2000
        while not self._stopping.is_set():
            try:
                await self._accepting.wait()
                if self._stopping.is_set():
                    break
                if loop.time() >= next_reclaim:
                    if not await self.reclaim():
                        next_reclaim = loop.time() + self.settings.claim_idle_ms / 2000
                    continue
                await self.process_next(block_ms=self.settings.read_block_ms)
                delay = 0.5
            except (RedisError, OSError) as exc:
                log.warning(
                    "cannot read tasks; retrying", extra={"error": repr(exc), "retry_in_s": delay}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except Exception:
                log.exception("task handling failed; continuing", extra={"worker": self.worker})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def process_next(self, *, block_ms: int | None) -> bool:
        """Read and handle one message; False when there was none (after `block_ms`)."""
        try:
            reply: Any = await self.redis.xreadgroup(
                ADAPTERS_GROUP, self.worker, {self.stream: ">"}, count=1, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.setup()
            return False
        if not reply or not reply[0][1]:
            return False
        entry_id, fields = reply[0][1][0]
        await self.handle(entry_id, fields)
        return True

    async def reclaim(self) -> bool:
        """Take over one entry another consumer (an adapter that died) left pending for
        `claim_idle_ms`, and handle it; False when there was none."""
        try:
            reply: Any = await self.redis.xautoclaim(
                self.stream,
                ADAPTERS_GROUP,
                self.worker,
                min_idle_time=self.settings.claim_idle_ms,
                start_id=self._reclaim_cursor,
                count=1,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.setup()
            return False
        cursor, entries = reply[0], reply[1]
        self._reclaim_cursor = _text(cursor)
        if not entries:
            return self._reclaim_cursor != "0-0"  # more of the list to scan
        entry_id, fields = entries[0]
        if not fields:  # trimmed away while pending
            await self.redis.xack(self.stream, ADAPTERS_GROUP, entry_id)
            return True
        pending: Any = await self.redis.xpending_range(
            self.stream, ADAPTERS_GROUP, min=entry_id, max=entry_id, count=1
        )
        deliveries = int(pending[0]["times_delivered"]) if pending else 1
        log.info(
            "took over a pending task message",
            extra={"entry_id": _text(entry_id), "deliveries": deliveries},
        )
        self.counts["reclaimed"] += 1
        await self.handle(entry_id, fields, deliveries=deliveries)
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
        try:
            envelope = decode(fields)
        except DecodeError as exc:
            await self._dead(entry_id, fields, f"undecodable: {exc}")
            return
        message = envelope.message
        if not isinstance(message, TaskMessage) or message.agent != self.settings.agent:
            await self._dead(
                entry_id, fields, f"{envelope.type} is not a task message for {self.settings.agent}"
            )
            return
        try:
            self.worktrees.repo(message)
        except WorktreeError as exc:  # no session of ours: nothing to run it on
            # If the orchestrator knows the task after all (a workspace not shared with
            # this adapter), it fails with the reason instead of waiting forever.
            await self._dead(entry_id, fields, f"unknown task: {exc}", failing=message)
            return
        if deliveries > self.settings.max_deliveries:
            # It kept killing or stalling its adapters: keep it, fail its task, stop trying.
            limit = f"delivered {deliveries} times (limit {self.settings.max_deliveries})"
            await self._dead(entry_id, fields, limit, failing=message)
            return
        claimed = await leases.claim(
            self.redis,
            self.keys,
            task_id=message.task_id,
            attempt=message.attempt,
            worker=self.worker,
            lease_s=self.settings.lease_s,
            claim_ttl_s=int(message.timeout_s + 24 * 3600),
        )
        if not claimed:
            holder = await self.redis.get(self.keys.claim(message.task_id, message.attempt))
            log.info(
                "attempt already claimed; duplicate delivery dropped",
                extra=self._ctx(message, holder=_text(holder or b"")),
            )
            self.counts["duplicate"] += 1
            await self.redis.xack(self.stream, ADAPTERS_GROUP, entry_id)
            return
        running = _Running(
            message=message, entry_id=entry_id, worktree=self.worktrees.path(message)
        )
        self._running[(message.task_id, message.attempt)] = running
        try:
            beat = asyncio.create_task(self._beat(running))
            try:
                outcome = await self._execute(running)
            except Exception as exc:  # a bug or an unforeseen failure: report, never hang
                log.exception("attempt failed in the adapter", extra=self._ctx(message))
                outcome = TaskFailed(
                    **self._about(message), reason="adapter_error", error=f"{type(exc).__name__}"
                )
            finally:
                running.finished.set()
                await _settle(beat)
            await self._publish(outcome)
            self.counts[outcome.TYPE] += 1
            await leases.finish(
                self.redis,
                self.keys,
                task_id=message.task_id,
                attempt=message.attempt,
                worker=self.worker,
                done_ttl_s=CLAIM_DONE_TTL_S,
            )
            await self.redis.xack(self.stream, ADAPTERS_GROUP, entry_id)
            log.info("attempt reported", extra=self._ctx(message, event=outcome.TYPE))
        finally:
            del self._running[(message.task_id, message.attempt)]
            await self._cleanup(message)

    async def _dead(
        self,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        reason: str,
        *,
        failing: TaskMessage | None = None,
    ) -> None:
        """Move an entry to the dead-letter stream; with `failing`, also fail that attempt
        (`dead_lettered`, never retried) so its task does not wait for it forever."""
        await dead_letter(
            self.redis,
            self.keys,
            stream=self.stream,
            entry_id=entry_id,
            fields=fields,
            reason=reason,
            group=ADAPTERS_GROUP,
        )
        if failing is not None:
            error = f"the task message was dead-lettered ({reason}); see {self.keys.dead}"
            await self._publish(
                TaskFailed(**self._about(failing), reason="dead_lettered", error=error)
            )
        await self.redis.xack(self.stream, ADAPTERS_GROUP, entry_id)
        self.counts["dead"] += 1

    # -- one attempt -----------------------------------------------------------------------

    async def _execute(self, running: _Running) -> Message:
        message = running.message
        common = self._about(message)
        if self._stopping.is_set():  # read while stopping: hand it back, unstarted
            return TaskCancelled(**common, reason="adapter shutting down")
        if self.mode != SystemMode.RUNNING:  # read as the mode changed: hand it back too
            return TaskCancelled(**common, reason=f"system {self.mode}")
        reason = await self.redis.get(self.keys.cancel(message.task_id, message.attempt))
        if reason is not None:
            return TaskCancelled(**common, reason=_text(reason))
        await self._publish(
            TaskStarted(**common, branch=message.branch, base_commit=message.base_commit)
        )
        log.info("attempt started", extra=self._ctx(message))
        try:
            worktree = await self.worktrees.prepare(message)
        except WorktreeError as exc:
            return TaskFailed(**common, reason="worktree_error", error=str(exc))
        return await self._work(running, worktree)

    async def _work(self, running: _Running, worktree: Path) -> Message:
        """Setup, agent, commit and gates in a prepared worktree."""
        message = running.message
        common = self._about(message)
        settings = _session_settings(message)
        checks: list[GateResult] = []
        conflicts: list[str] = []
        before = await asyncio.to_thread(escape.snapshot, self.worktrees.workspace, worktree)
        try:
            exclude = await self._setup(running, worktree, settings, checks, conflicts)
        except SetupError as exc:
            gates = [c.model_dump(mode="json") for c in checks]
            if running.cancel.is_set():
                return TaskCancelled(**common, reason=running.cancel_reason, gates=gates)
            escaped = await self._escaped(running, worktree, before, checks)
            return escaped or TaskFailed(
                **common, reason="setup_failed", error=str(exc), gates=gates
            )
        result = await self._run_agent(running, worktree)
        if result.outcome == "succeeded" and message.merge_with:
            suspects = {*conflicts, *message.conflict_files, *message.files}
            left = await unresolved(worktree, sorted(suspects))
            if left:
                result.outcome, result.reason = "failed", "unresolved_conflict"
                result.error = "conflict markers are left in " + ", ".join(left[:20])
        if running.fenced:  # another attempt may own the branch now: leave it alone
            return TaskCancelled(
                **common,
                reason=running.cancel_reason,
                exit_code=result.exit_code,
                duration_s=result.duration_s,
            )
        escaped = await self._escaped(running, worktree, before, checks, result, exclude=exclude)
        if escaped is not None:
            return escaped
        try:
            scrubbed = await self.worktrees.scrub(worktree, self.secrets)
            if scrubbed:
                log.warning(
                    "the agent wrote a secret into files; redacted before commit",
                    extra=self._ctx(message, files=",".join(scrubbed[:20])),
                )
            commit = await self.worktrees.commit(
                message, worktree, status=result.outcome, exclude=exclude
            )
        except WorktreeError as exc:
            return TaskFailed(
                **common,
                reason="git_error",
                error=str(exc),
                exit_code=result.exit_code,
                output_tail=result.output_tail,
                duration_s=result.duration_s,
            )
        if result.outcome == "succeeded":
            checks.extend(await self._gates(running, worktree, settings))
            escaped = await self._escaped(running, worktree, before, checks, result)
            if escaped is not None:  # by the gates, which run what the agent wrote
                return escaped
        return self._outcome(running, result, commit, checks, settings.gates.mode)

    async def _escaped(
        self,
        running: _Running,
        worktree: Path,
        before: escape.Snapshot,
        checks: list[GateResult],
        result: RunResult | None = None,
        *,
        exclude: list[str] | None = None,
    ) -> TaskFailed | None:
        """The `workspace_escape` failure when the attempt wrote to the workspace outside its
        worktree since `before` or (with `exclude`, before the commit) leaves a symlink or a
        `.git` file pointing out of it; None when it did not. The task's branch is put back
        where the attempt started, so nothing of it stays committed."""
        message = running.message
        ran = result or RunResult(outcome="failed", exit_code=None)
        gates = [c.model_dump(mode="json") for c in checks]
        workspace = self.worktrees.workspace
        links: list[str] = []
        # The workspace first: before git runs again here, a mirror's config written by the
        # agent (a filter or fsmonitor command, say) is put back.
        writes = await asyncio.to_thread(escape.writes_outside, workspace, before)
        if writes:
            undone = await asyncio.to_thread(escape.restore_mirrors, workspace, before)
            if undone:
                log.warning("writes into the mirror undone", extra=self._ctx(message, paths=undone))
        elif exclude is not None:
            try:
                links = await asyncio.to_thread(
                    functools.partial(
                        escape.escaping_symlinks,
                        worktree,
                        message.base_commit,
                        exclude=exclude,
                        expected_git_link=before.git_link,
                    )
                )
            except (git.GitError, TimeoutError) as exc:  # unchecked: not to be committed
                return TaskFailed(
                    **self._about(message),
                    reason="git_error",
                    error=f"cannot check the worktree for symlinks: {exc}",
                    exit_code=ran.exit_code,
                    gates=gates,
                )
        if not links and not writes:
            return None
        error = clean_text(self.redact(escape.describe(links, writes)))
        log.warning(
            "the attempt wrote outside its worktree; its work is refused",
            extra=self._ctx(message, error=error[:1000]),
        )
        try:
            await self.worktrees.restore_branch(message)
        except WorktreeError as exc:
            log.warning("task branch not restored", extra=self._ctx(message, error=str(exc)))
        return TaskFailed(
            **self._about(message),
            reason="workspace_escape",
            error=error[:4000],
            exit_code=ran.exit_code,
            output_tail=ran.output_tail,
            duration_s=ran.duration_s,
            gates=gates,
        )

    async def _setup(
        self,
        running: _Running,
        worktree: Path,
        settings: SessionSettings,
        checks: list[GateResult],
        conflicts: list[str],
    ) -> list[str]:
        """Merge in (resolution tasks; the conflicting paths go to `conflicts`), copy setup
        files, run the setup command (its result goes to `checks`); return the paths to keep
        out of the commit. Raises `SetupError`."""
        message = running.message
        if message.merge_with:
            conflicts.extend(await merge_in(worktree, message.merge_with))
            await self._progress(
                message,
                "setup",
                f"merged the integration head; {len(conflicts)} file(s) to resolve",
                {"conflicts": conflicts[:200]},
            )
        setup = settings.setup
        if setup.files:
            await copy_setup_files(self.worktrees.workspace, message, worktree, setup.files)
        if setup.command:
            command = GateCommand(
                name="setup",
                command=setup.command,
                source="session",
                tool=None,
                timeout_s=setup.timeout_s,
            )
            [outcome] = await self._checks(running, worktree, [command])
            checks.append(outcome)
            if outcome.status != "passed":
                raise SetupError(f"the setup command {outcome.status}: {outcome.reason}")
        made = await untracked(worktree) if (setup.command or setup.files) else []
        return sorted({*setup.files, *made})

    async def _gates(
        self, running: _Running, worktree: Path, settings: SessionSettings
    ) -> list[GateResult]:
        plan = plan_gates(settings.gates, worktree, only=running.message.gates)
        if not plan:
            return []
        return await self._checks(running, worktree, plan)

    async def _checks(
        self, running: _Running, worktree: Path, plan: list[GateCommand]
    ) -> list[GateResult]:
        """Run setup or gate commands with the agent's environment."""
        message = running.message
        env = task_env(
            message,
            worktree=worktree,
            home=self.worktrees.home(message),
            environ=dict(os.environ),
        )
        try:
            results = await run_gates(
                plan,
                cwd=worktree,
                env=env,
                log_dir=self.worktrees.artifacts(message),
                cancel=running.cancel,
                tail_bytes=self.settings.output_tail_bytes,
                kill_grace_s=self.settings.kill_grace_s,
                relative_to=self.worktrees.workspace,
                redact=self.redact.redact_bytes,
            )
        finally:
            await asyncio.to_thread(kill_strays, f"SWARM_WORKTREE={worktree}")
        for result in results:
            await self._progress(
                message,
                "gate",
                f"{result.name}: {result.status}"
                + (f" ({result.reason})" if result.reason else ""),
                {"gate": result.name, "status": result.status, "exit_code": result.exit_code},
            )
        return results

    async def _run_agent(self, running: _Running, worktree: Path) -> RunResult:
        """The runner, with batched progress beside it."""
        message = running.message
        batcher = ProgressBatcher(
            lambda kind, text, data: self._progress(message, kind, text, data),
            interval_s=self.settings.progress_interval_s,
        )
        ctx = RunContext(
            message=message,
            worktree=worktree,
            home=self.worktrees.home(message),
            artifacts=self.worktrees.artifacts(message),
            cancel=running.cancel,
            kill_grace_s=self.settings.kill_grace_s,
            tail_bytes=self.settings.output_tail_bytes,
            progress=batcher.add,
        )
        batcher.start()
        try:
            return await self.runner.run(ctx)
        except Exception as exc:
            log.exception("runner crashed", extra=self._ctx(message))
            return RunResult(
                outcome="failed",
                exit_code=None,
                reason="crash",
                error=f"{type(exc).__name__}: {exc}",
            )
        finally:
            await batcher.stop()
            # Whatever the agent left running outside its process group goes too.
            await asyncio.to_thread(kill_strays, f"SWARM_WORKTREE={worktree}")

    def _outcome(
        self,
        running: _Running,
        result: RunResult,
        commit: Commit,
        checks: list[GateResult],
        mode: GateMode,
    ) -> Message:
        transcript = None
        if result.transcript_path is not None:
            with contextlib.suppress(ValueError):
                transcript = str(result.transcript_path.relative_to(self.worktrees.workspace))
        outcome: dict[str, Any] = {
            **self._about(running.message),
            "exit_code": result.exit_code,
            "commit": commit.sha,
            "changed_files": commit.changed_files,
            "duration_s": result.duration_s,
            "output_tail": result.output_tail,
            "usage": result.usage,
            "cost_usd": result.cost_usd,
            "transcript_path": transcript,
            "gates": [c.model_dump(mode="json") for c in checks],
        }
        if running.cancel.is_set() and result.outcome == "failed":  # killed for the cancel
            result.outcome = "cancelled"
        if result.outcome == "succeeded" and any(c.status == "cancelled" for c in checks):
            return TaskCancelled(**outcome, reason=running.cancel_reason or "cancelled")
        failed = blocking_failures(checks, mode)
        if result.outcome == "succeeded" and failed:
            return TaskFailed(
                **outcome,
                reason="gate_failed",
                error="; ".join(f"gate {g.name} {g.status}: {g.reason}" for g in failed),
            )
        if result.outcome == "succeeded":
            return TaskSucceeded(**outcome)
        if result.outcome == "cancelled":
            return TaskCancelled(**outcome, reason=running.cancel_reason or "cancelled")
        return TaskFailed(
            **outcome,
            reason=result.reason or "failed",
            error=clean_text(result.error),
            retry_at=result.retry_at,
        )

    async def _beat(self, running: _Running) -> None:
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
        renewed = last_beat = loop.time()  # the claim took the lease just now
        finished = asyncio.ensure_future(running.finished.wait())
        try:
            while not running.finished.is_set():
                await asyncio.wait([finished], timeout=poll)
                if running.finished.is_set():
                    return
                beat_due = loop.time() - last_beat >= interval
                if beat_due:
                    last_beat = loop.time()
                round_ = asyncio.ensure_future(self._beat_round(running, renew=beat_due))
                done, _ = await asyncio.wait([round_], timeout=max(poll, lease_s / 4))
                if not done:
                    round_.cancel()
                    log.warning("heartbeat timed out", extra=self._ctx(message))
                elif (error := round_.exception()) is not None:
                    log.warning("heartbeat failed", extra=self._ctx(message, error=repr(error)))
                elif round_.result():
                    renewed = last_beat
                if loop.time() - renewed > lease_s / 2 and not running.fenced:
                    running.fence("lease_expiring")
                    log.warning(
                        "lease not renewed for half its length; stopping the attempt",
                        extra=self._ctx(message, lease_s=lease_s),
                    )
        finally:
            finished.cancel()

    async def _beat_round(self, running: _Running, *, renew: bool) -> bool:
        """Check for a cancel request; with `renew`, renew the lease (True when renewed),
        publish a heartbeat and touch the stream entry."""
        message = running.message
        reason = await self.redis.get(self.keys.cancel(message.task_id, message.attempt))
        if reason is not None:
            running.request_cancel(_text(reason))
        if not renew:
            return False
        kept = await leases.renew(
            self.redis,
            self.keys,
            task_id=message.task_id,
            attempt=message.attempt,
            worker=self.worker,
            lease_s=self.settings.lease_s,
        )
        if not kept:
            running.fence("lease_lost")
            log.warning("attempt lost its lease; stopping it", extra=self._ctx(message))
        await self._publish(TaskHeartbeat(**self._about(message)), retry=False)
        await self.redis.xclaim(
            self.stream, ADAPTERS_GROUP, self.worker, 0, [running.entry_id], justid=True
        )
        return kept

    async def _progress(
        self, message: TaskMessage, kind: str, text: str, data: dict[str, Any]
    ) -> None:
        await self._publish(
            TaskProgress(
                **self._about(message),
                kind=kind,
                text=clean_text(text),
                data=clean(data),
            ),
            retry=False,
        )

    async def _cleanup(self, message: TaskMessage) -> None:
        try:
            await self.worktrees.remove(message)
        except Exception:
            log.exception("worktree cleanup failed", extra=self._ctx(message))

    # -- publishing ------------------------------------------------------------------------

    async def _publish(self, message: Message, *, retry: bool = True) -> None:
        """Append an event; with `retry`, keep trying (same envelope id, so a duplicate is
        recognised) until Redis takes it or the adapter is abandoning its work. What goes out
        passes the redaction filter."""
        fields = {
            name: self.redact(value.decode()).encode() for name, value in encode(message).items()
        }
        delay = 0.2
        while True:
            try:
                await self.redis.xadd(
                    self.keys.events,
                    fields,  # type: ignore[arg-type]
                    maxlen=EVENTS_MAXLEN,
                    approximate=True,
                )
                return
            except (RedisError, OSError) as exc:
                if not retry or self._abandon.is_set():
                    log.warning(
                        "event not published", extra={"type": message.TYPE, "error": repr(exc)}
                    )
                    return
                log.warning(
                    "cannot publish event; retrying",
                    extra={"type": message.TYPE, "error": repr(exc), "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _control_loop(self) -> None:
        """Follow the system mode: drain (take no new work), stop (kill everything now and
        take no work), run."""
        while True:
            try:
                mode = await read_mode(self.redis, self.keys)
            except (RedisError, OSError) as exc:
                log.warning("cannot read the system mode", extra={"error": repr(exc)})
                mode = self.mode
            if mode != self.mode:
                log.warning("system mode changed", extra={"worker": self.worker, "mode": mode})
                self.mode = mode
                if mode == SystemMode.RUNNING:
                    self._accepting.set()
                else:
                    self._accepting.clear()
            if mode == SystemMode.STOPPED and self._running:
                self.kill_all("emergency stop")
            await asyncio.sleep(self.settings.control_poll_interval_s)

    async def _registry_loop(self) -> None:
        ttl = self.settings.worker_ttl_s
        key = self.keys.worker(self.worker)
        while True:
            running = [
                {
                    "task_id": str(r.message.task_id),
                    "task_key": r.message.task_key,
                    "attempt": r.message.attempt,
                }
                for r in self._running.values()
            ]
            try:
                pipe = self.redis.pipeline(transaction=True)
                pipe.hset(
                    key,
                    mapping={
                        "agent": self.settings.agent,
                        "host": socket.gethostname(),
                        "pid": os.getpid(),
                        "concurrency": self.settings.concurrency,
                        "running": json.dumps(running),
                        "mode": self.mode.value,
                        "updated_at": utcnow().isoformat(),
                    },
                )
                pipe.expire(key, int(max(ttl, 1)))
                await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("liveness key not refreshed", extra={"error": repr(exc)})
            await asyncio.sleep(ttl / 3)

    def _about(self, message: TaskMessage) -> dict[str, Any]:
        """The fields every event about this attempt carries."""
        return {
            "session_id": message.session_id,
            "task_id": message.task_id,
            "attempt": message.attempt,
            "worker": self.worker,
        }

    def _ctx(self, message: TaskMessage, **extra: Any) -> dict[str, Any]:
        return {
            "task_id": str(message.task_id),
            "task_key": message.task_key,
            "attempt": message.attempt,
            "worker": self.worker,
            **extra,
        }


def _session_settings(message: TaskMessage) -> SessionSettings:
    """The session's settings as the orchestrator validated them; a newer orchestrator's
    unknown keys are ignored here rather than failing the attempt."""
    try:
        return SessionSettings.model_validate(message.settings)
    except ValidationError:
        known = {k: v for k, v in message.settings.items() if k in SessionSettings.model_fields}
        try:
            return SessionSettings.model_validate(known)
        except ValidationError:
            log.warning(
                "session settings unreadable; defaults used", extra={"task_key": message.task_key}
            )
            return SessionSettings()


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


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
