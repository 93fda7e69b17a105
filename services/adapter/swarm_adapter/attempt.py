"""The attempt pipeline: one claimed attempt, from its cancel check to its result message.

Read a cancel request (a cancelled attempt never starts), emit `task.started`, prepare the
worktree, merge in (resolution tasks), copy the setup files and run the setup command (see
`preparation`), run the agent with batched progress beside it, check that nothing was
written outside the worktree (`escape_check`: a failure with `workspace_escape`, the branch
put back), redact secrets from the files and commit, run the quality gates on the commit and
check again, and build the result message (`outcome`).

A read-only task (a planner: it answers rather than changes) runs its agent alone: no
setup, no commit, no gates. Whatever it wrote goes with its worktree, its branch stays where
it started, and its final message is reported as `answer`.

It knows nothing of Redis: its events go out, and cancel requests come in, through a
`running.Reporter` (the adapter's streams; a list in tests). Claiming, the lease, the
heartbeat and acknowledging are the consumer's business (`worker`, `heartbeat`)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from swarm_adapter import escape, handoff, review
from swarm_adapter.escape_check import EscapeCheck
from swarm_adapter.outcome import result_message, spend
from swarm_adapter.preparation import SetupError, copy_setup_files, merge_in, unresolved, untracked
from swarm_adapter.progress import ProgressBatcher
from swarm_adapter.runners.base import RunContext, Runner, RunResult, task_env
from swarm_adapter.running import Reporter, Running, about, log_context
from swarm_adapter.sandbox import Cell, Sandboxing, endpoint
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.transcript import LastWords
from swarm_adapter.worktree import Commit, WorktreeError, Worktrees
from swarm_common.gates import GateCommand, GateResult, plan_gates, refuse_gates, run_gates
from swarm_common.messages import (
    Message,
    TaskCancelled,
    TaskFailed,
    TaskMessage,
    TaskProgress,
    TaskStarted,
    TaskSucceeded,
)
from swarm_common.procs import kill_strays
from swarm_common.redaction import Redactor
from swarm_common.session_settings import SessionSettings
from swarm_common.text import clean, clean_text

__all__ = ["AttemptPipeline", "session_settings"]

log = logging.getLogger(__name__)

NO_COMMANDS = "this adapter runs no session commands (start it with SWARM_ALLOW_COMMANDS=true)"


class AttemptPipeline:
    """Runs claimed attempts in their worktrees; one per adapter, shared by its slots."""

    def __init__(
        self,
        *,
        settings: AdapterSettings,
        worktrees: Worktrees,
        runner: Runner,
        sandboxing: Sandboxing | None = None,
        redact: Redactor,
        secrets: list[str],
        reporter: Reporter,
    ) -> None:
        self.settings = settings
        self.worker = settings.worker_name
        self.worktrees = worktrees
        self.runner = runner
        self.sandboxing = sandboxing or Sandboxing(mode="none", reason="not asked for")
        self.redact = redact
        self.secrets = secrets
        self.reporter = reporter
        self.escapes = EscapeCheck(worktrees=worktrees, redact=redact, worker=self.worker)

    async def run(self, running: Running) -> Message:
        """The attempt's result message: `task.succeeded`, `task.failed` or
        `task.cancelled`. Raises only on a bug (the consumer reports `adapter_error`)."""
        message = running.message
        common = about(message, self.worker)
        reason = await self.reporter.cancel_request(message)
        if reason is not None:
            return TaskCancelled(**common, reason=reason)
        await self.reporter.publish(
            TaskStarted(
                **common,
                branch=message.branch,
                base_commit=message.base_commit,
                deliveries=running.deliveries,
            )
        )
        log.info("attempt started", extra=self._ctx(message))
        try:
            worktree = await self.worktrees.prepare(message)
        except WorktreeError as exc:
            return TaskFailed(**common, reason="worktree_error", error=str(exc))
        try:
            cell = await self._cell(message, worktree)
        except (OSError, WorktreeError) as exc:
            return TaskFailed(**common, reason="worktree_error", error=f"no sandbox: {exc}")
        running.wrap = cell.wrap
        try:
            result = await self._work(running, worktree)
        finally:
            await cell.close()
        summary = cell.summary()
        if summary is not None and isinstance(result, TaskSucceeded | TaskFailed | TaskCancelled):
            result = result.model_copy(update={"sandbox": summary})
            if summary["refused"]:
                log.warning(
                    "the sandbox refused connections",
                    extra=self._ctx(message, refused=summary["refused"]),
                )
        return result

    async def _cell(self, message: TaskMessage, worktree: Path) -> Cell:
        """The attempt's sandbox: its worktree, home and what of the mirror git needs; the
        agent's model APIs and the session's allowed hosts behind its proxy."""
        return await self.sandboxing.cell(
            worktree=worktree,
            home=self.worktrees.home(message),
            repo=self.worktrees.repo(message),
            models=[endpoint(url) for url in self.runner.model_apis()],
            allow_hosts=session_settings(message).sandbox.allow_hosts,
            context=self._ctx(message),
        )

    async def _work(self, running: Running, worktree: Path) -> Message:
        """Setup, agent, commit and gates in a prepared worktree (read-only: the agent
        alone, see `_answered`)."""
        message = running.message
        settings = session_settings(message)
        checks: list[GateResult] = []
        conflicts: list[str] = []
        exclude: list[str] = []
        before = await self.escapes.snapshot(worktree)
        if not message.read_only:
            try:
                exclude = await self._setup(running, worktree, settings, checks, conflicts)
            except SetupError as exc:
                return await self._setup_failed(running, worktree, before, checks, exc)
        context = await asyncio.to_thread(handoff.write_context, worktree, message)
        if context is not None:  # for the agent only: never committed, gone before the gates
            exclude = [*exclude, context.path]
        result = await self._run_agent(running, worktree)
        if context is not None:
            await asyncio.to_thread(handoff.remove_context, worktree, context)
        await self._check_resolved(message, worktree, result, conflicts)
        if running.fenced:  # another attempt may own the branch now: leave it alone
            return TaskCancelled(
                **about(message, self.worker),
                reason=running.cancel_reason,
                exit_code=result.exit_code,
                duration_s=result.duration_s,
                **spend(result),
            )
        if message.read_only:
            return await self._answered(running, worktree, before, result, settings)
        listed = escape.Listed()
        escaped = await self.escapes.refusal(
            message, worktree, before, checks, result, exclude=exclude, listed=listed
        )
        if escaped is not None:
            return escaped
        commit = await self._commit(message, worktree, result, exclude, listed.entries)
        if not isinstance(commit, Commit):
            return commit
        if result.outcome == "succeeded":
            checks.extend(await self._gates(running, worktree, settings))
            escaped = await self.escapes.refusal(message, worktree, before, checks, result)
            if escaped is not None:  # by the gates, which run what the agent wrote
                return escaped
        return result_message(
            running,
            result,
            commit,
            checks,
            settings.gates.mode,
            workspace=self.worktrees.workspace,
            worker=self.worker,
        )

    async def _answered(
        self,
        running: Running,
        worktree: Path,
        before: escape.Snapshot,
        result: RunResult,
        settings: SessionSettings,
    ) -> Message:
        """A read-only run's result: a write outside the worktree is refused as ever; what it
        wrote inside is not committed (it goes with the worktree), its branch is put back
        should the agent have committed on it, and its answer is reported."""
        message = running.message
        escaped = await self.escapes.refusal(message, worktree, before, [], result)
        if escaped is not None:
            return escaped
        try:
            await self.worktrees.restore_branch(message)
        except WorktreeError as exc:
            return TaskFailed(
                **about(message, self.worker),
                reason="git_error",
                error=str(exc),
                exit_code=result.exit_code,
                duration_s=result.duration_s,
                **spend(result),
            )
        return result_message(
            running,
            result,
            None,
            [],
            settings.gates.mode,
            workspace=self.worktrees.workspace,
            worker=self.worker,
        )

    async def _setup_failed(
        self,
        running: Running,
        worktree: Path,
        before: escape.Snapshot,
        checks: list[GateResult],
        error: SetupError,
    ) -> Message:
        """Cancelled when a cancel stopped the setup, refused when it wrote outside the
        worktree, else `setup_failed`."""
        common = about(running.message, self.worker)
        gates = [c.model_dump(mode="json") for c in checks]
        if running.cancel.is_set():
            return TaskCancelled(**common, reason=running.cancel_reason, gates=gates)
        escaped = await self.escapes.refusal(running.message, worktree, before, checks)
        return escaped or TaskFailed(**common, reason="setup_failed", error=str(error), gates=gates)

    async def _check_resolved(
        self, message: TaskMessage, worktree: Path, result: RunResult, conflicts: list[str]
    ) -> None:
        """A resolution task that leaves conflict markers in a file did not succeed."""
        if result.outcome != "succeeded" or not message.merge_with:
            return
        suspects = {*conflicts, *message.conflict_files, *message.files}
        left = await unresolved(worktree, sorted(suspects))
        if left:
            result.outcome, result.reason = "failed", "unresolved_conflict"
            result.error = "conflict markers are left in " + ", ".join(left[:20])

    async def _commit(
        self,
        message: TaskMessage,
        worktree: Path,
        result: RunResult,
        exclude: list[str],
        listed: list[str] | None,
    ) -> Commit | TaskFailed:
        """Redact secrets the agent wrote into files, then commit (`git_error` if git
        fails). `listed`: the worktree's `git status` entries, when the escape check just
        read them."""
        try:
            scrubbed = await self.worktrees.scrub(worktree, self.secrets, listed=listed)
            if scrubbed.files:
                log.warning(
                    "the agent wrote a secret into files; redacted before commit",
                    extra=self._ctx(message, files=",".join(scrubbed.files[:20])),
                )
            return await self.worktrees.commit(
                message, worktree, status=result.outcome, exclude=exclude, changes=scrubbed.changes
            )
        except WorktreeError as exc:
            return TaskFailed(
                **about(message, self.worker),
                reason="git_error",
                error=str(exc),
                exit_code=result.exit_code,
                output_tail=result.output_tail,
                duration_s=result.duration_s,
                **spend(result),
            )

    # -- setup, gates and the agent --------------------------------------------------------

    async def _setup(
        self,
        running: Running,
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
        if setup.command and not self.settings.runs_commands:
            raise SetupError(f"the setup command was not run: {NO_COMMANDS}")
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
        self, running: Running, worktree: Path, settings: SessionSettings
    ) -> list[GateResult]:
        plan = plan_gates(settings.gates, worktree, only=running.message.gates)
        if not plan:
            return []
        if not self.settings.runs_commands:
            return refuse_gates(plan, f"not run: {NO_COMMANDS}")
        return await self._checks(running, worktree, plan)

    async def _checks(
        self, running: Running, worktree: Path, plan: list[GateCommand]
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
                wrap=running.wrap,
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

    async def _run_agent(self, running: Running, worktree: Path) -> RunResult:
        """The runner, with batched progress beside it (a review run's message with the
        diff it judges)."""
        message = await review.with_diff(running.message, worktree)
        batcher = ProgressBatcher(
            lambda kind, text, data: self._progress(message, kind, text, data),
            interval_s=self.settings.progress_interval_s,
        )
        words = LastWords()  # what it said last, for the attempt after a failure

        def observed(kind: str, text: str, data: dict[str, Any]) -> None:
            words.add(kind, text)
            batcher.add(kind, text, data)

        ctx = RunContext(
            message=message,
            worktree=worktree,
            home=self.worktrees.home(message),
            artifacts=self.worktrees.artifacts(message),
            cancel=running.cancel,
            kill_grace_s=self.settings.kill_grace_s,
            tail_bytes=self.settings.output_tail_bytes,
            progress=observed,
            wrap=running.wrap,
        )
        batcher.start()
        try:
            result = await self.runner.run(ctx)
        except Exception as exc:
            log.exception("runner crashed", extra=self._ctx(message))
            result = RunResult(
                outcome="failed",
                exit_code=None,
                reason="crash",
                error=f"{type(exc).__name__}: {exc}",
            )
        finally:
            await batcher.stop()
            # Whatever the agent left running outside its process group goes too.
            await asyncio.to_thread(kill_strays, f"SWARM_WORKTREE={worktree}")
        result.transcript_summary = words.summary()
        return result

    async def _progress(
        self, message: TaskMessage, kind: str, text: str, data: dict[str, Any]
    ) -> None:
        progress = TaskProgress(
            **about(message, self.worker), kind=kind, text=clean_text(text), data=clean(data)
        )
        await self.reporter.publish(progress, retry=False)

    def _ctx(self, message: TaskMessage, **extra: Any) -> dict[str, Any]:
        return log_context(message, self.worker, **extra)


def session_settings(message: TaskMessage) -> SessionSettings:
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
