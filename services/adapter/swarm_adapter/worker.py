"""The adapter's consumer loop: one task message at a time per slot, from claim to ack.

For each message: decode (bad ones go to the dead-letter stream), claim the attempt with
`SET NX` (a second claim of the same attempt is refused, so a message delivered twice runs
once), emit `task.started`, prepare the worktree (setup files and command, see
`preparation`), run the agent with heartbeats and cancel checks beside it, commit, run the
quality gates on the commit, emit the result event, and only then acknowledge.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from swarm_adapter.preparation import SetupError, copy_setup_files, merge_in, unresolved, untracked
from swarm_adapter.progress import ProgressBatcher
from swarm_adapter.runners.base import RunContext, Runner, RunResult, task_env
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worktree import Commit, WorktreeError, Worktrees
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
from swarm_common.session_settings import SessionSettings
from swarm_common.streams import ADAPTERS_GROUP, DecodeError, Keys, dead_letter, decode, encode
from swarm_common.streams import ensure_group as _ensure_group
from swarm_common.text import clean, clean_text

__all__ = ["Adapter"]

log = logging.getLogger(__name__)

CLAIM_DONE_TTL_S = 7 * 24 * 3600
EVENTS_MAXLEN = 1_000_000


@dataclass
class _Running:
    message: TaskMessage
    entry_id: bytes
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str = ""

    def request_cancel(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()


class Adapter:
    def __init__(self, *, settings: AdapterSettings, redis: Redis, runner: Runner) -> None:
        self.settings = settings
        self.redis = redis
        self.runner = runner
        self.keys = Keys(settings.redis_prefix)
        self.stream = self.keys.tasks(settings.agent)
        self.worker = settings.worker_name
        self.worktrees = Worktrees(settings.workspace)
        self.counts: Counter[str] = Counter()
        self._stopping = asyncio.Event()
        self._abandon = asyncio.Event()
        self._running: dict[tuple[uuid.UUID, int], _Running] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def setup(self) -> None:
        await _ensure_group(self.redis, self.stream, ADAPTERS_GROUP)

    def stop(self) -> None:
        """Stop taking work; safe to call twice (from a signal handler, say)."""
        self._stopping.set()

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
        registry.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await registry
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
            await asyncio.wait(pending)

    # -- consuming -------------------------------------------------------------------------

    async def _consume_loop(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
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

    async def process_available(self) -> int:
        """Burst mode (tests, one-shot runs): handle every waiting message, then return."""
        handled = 0
        while await self.process_next(block_ms=None):
            handled += 1
        return handled

    async def handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
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
        claim_key = self.keys.claim(message.task_id, message.attempt)
        ttl = int(message.timeout_s + 24 * 3600)
        if not await self.redis.set(claim_key, self.worker, nx=True, ex=ttl):
            holder = await self.redis.get(claim_key)
            log.info(
                "attempt already claimed; duplicate delivery dropped",
                extra=self._ctx(message, holder=_text(holder or b"")),
            )
            self.counts["duplicate"] += 1
            await self.redis.xack(self.stream, ADAPTERS_GROUP, entry_id)
            return
        running = _Running(message=message, entry_id=entry_id)
        self._running[(message.task_id, message.attempt)] = running
        try:
            try:
                outcome = await self._execute(running)
            except Exception as exc:  # a bug or an unforeseen failure: report, never hang
                log.exception("attempt failed in the adapter", extra=self._ctx(message))
                outcome = TaskFailed(
                    **self._about(message), reason="adapter_error", error=f"{type(exc).__name__}"
                )
            await self._publish(outcome)
            self.counts[outcome.TYPE] += 1
            await self.redis.set(claim_key, f"done:{self.worker}", xx=True, ex=CLAIM_DONE_TTL_S)
            await self.redis.xack(self.stream, ADAPTERS_GROUP, entry_id)
            log.info("attempt reported", extra=self._ctx(message, event=outcome.TYPE))
        finally:
            del self._running[(message.task_id, message.attempt)]
            await self._cleanup(message)

    async def _dead(self, entry_id: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        await dead_letter(
            self.redis,
            self.keys,
            stream=self.stream,
            entry_id=entry_id,
            fields=fields,
            reason=reason,
            group=ADAPTERS_GROUP,
        )
        await self.redis.xack(self.stream, ADAPTERS_GROUP, entry_id)
        self.counts["dead"] += 1

    # -- one attempt -----------------------------------------------------------------------

    async def _execute(self, running: _Running) -> Message:
        message = running.message
        common = self._about(message)
        if self._stopping.is_set():  # read while stopping: hand it back, unstarted
            return TaskCancelled(**common, reason="adapter shutting down")
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
        settings = _session_settings(message)
        checks: list[GateResult] = []
        conflicts: list[str] = []
        try:
            exclude = await self._setup(running, worktree, settings, checks, conflicts)
        except SetupError as exc:
            gates = [c.model_dump(mode="json") for c in checks]
            if running.cancel.is_set():
                return TaskCancelled(**common, reason=running.cancel_reason, gates=gates)
            return TaskFailed(**common, reason="setup_failed", error=str(exc), gates=gates)
        result = await self._run_agent(running, worktree)
        if result.outcome == "succeeded" and message.merge_with:
            suspects = {*conflicts, *message.conflict_files, *message.files}
            left = await unresolved(worktree, sorted(suspects))
            if left:
                result.outcome, result.reason = "failed", "unresolved_conflict"
                result.error = "conflict markers are left in " + ", ".join(left[:20])
        try:
            scrubbed = await self.worktrees.scrub(worktree, self.runner.secrets)
            if scrubbed:
                log.warning(
                    "the agent wrote its API key into files; redacted before commit",
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
        return self._outcome(running, result, commit, checks, settings.gates.mode)

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
        """Run setup or gate commands with the agent's environment, heartbeats beside."""
        message = running.message
        env = task_env(
            message,
            worktree=worktree,
            home=self.worktrees.home(message),
            environ=dict(os.environ),
        )
        beat = asyncio.create_task(self._beat(running))
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
            )
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
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
        """The runner, with heartbeats and batched progress beside it."""
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
        beat = asyncio.create_task(self._beat(running))
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
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
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
        """Beside a running attempt: heartbeats, cancel checks, and keeping the stream entry
        fresh so that peers do not take it over."""
        message = running.message
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        cancel_key = self.keys.cancel(message.task_id, message.attempt)
        while True:
            await asyncio.sleep(self.settings.cancel_poll_interval_s)
            try:
                reason = await self.redis.get(cancel_key)
                if reason is not None:
                    running.request_cancel(_text(reason))
                if loop.time() - last_beat >= self.settings.heartbeat_interval_s:
                    last_beat = loop.time()
                    await self._publish(TaskHeartbeat(**self._about(message)), retry=False)
                    await self.redis.xclaim(
                        self.stream, ADAPTERS_GROUP, self.worker, 0, [running.entry_id], justid=True
                    )
            except (RedisError, OSError) as exc:
                log.warning("heartbeat failed", extra=self._ctx(message, error=repr(exc)))

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
        recognised) until Redis takes it or the adapter is abandoning its work."""
        fields = encode(message)
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


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
