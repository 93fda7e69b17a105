"""The verdict on an attempt that got as far as a commit (or, read-only, past its agent):
which result message it reports (`task.succeeded`, `task.failed` or `task.cancelled`) and
what that message carries, from the runner's result, the commit, the gates and the agent's
answer. Pure: no I/O, so every combination can be tested on its own."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from swarm_adapter import handoff
from swarm_adapter.answers import ANSWER_TOO_LONG, oversize, reports_answer
from swarm_adapter.runners.base import RunResult
from swarm_adapter.running import Running, about
from swarm_adapter.worktree import Commit
from swarm_common.gates import GateMode, GateResult, blocking_failures
from swarm_common.messages import Message, TaskCancelled, TaskFailed, TaskSucceeded
from swarm_common.text import clean_text

__all__ = ["result_message", "spend"]


def result_message(
    running: Running,
    result: RunResult,
    commit: Commit | None,
    checks: list[GateResult],
    mode: GateMode,
    *,
    workspace: Path,
    worker: str,
) -> Message:
    """A cancel wins over a failure it caused (the agent killed for it), a cancelled gate
    cancels a success, a blocking gate failure fails it (`gate_failed`), so does an answer
    too long to report (`answer_too_long`); otherwise the runner's outcome stands. A
    cancelled attempt is retryable, not failed. `commit` is None for a read-only run."""
    fields = _fields(running, result, commit, checks, workspace=workspace, worker=worker)
    if running.cancel.is_set() and result.outcome == "failed":  # killed for the cancel
        result.outcome = "cancelled"
    if result.outcome == "succeeded":
        if any(c.status == "cancelled" for c in checks):
            return TaskCancelled(**fields, reason=running.cancel_reason or "cancelled")
        failed = blocking_failures(checks, mode)
        if failed:
            return TaskFailed(
                **fields,
                reason="gate_failed",
                error="; ".join(f"gate {g.name} {g.status}: {g.reason}" for g in failed),
            )
        return _succeeded(running, result, fields)
    if result.outcome == "cancelled":
        return TaskCancelled(**fields, reason=running.cancel_reason or "cancelled")
    return TaskFailed(
        **fields,
        reason=result.reason or "failed",
        error=clean_text(result.error),
        retry_at=result.retry_at,
        transcript_summary=result.transcript_summary,
    )


def spend(result: RunResult) -> dict[str, Any]:
    """What the agent used, for a result message that reports no work (a refusal, a git
    error, a fenced attempt): its tokens are spent whatever became of its work."""
    return {"usage": result.usage, "cost_usd": result.cost_usd, "model": result.model}


def _succeeded(running: Running, result: RunResult, fields: dict[str, Any]) -> Message:
    """`task.succeeded`, with the agent's handoff (not for a read-only run) and its answer
    when the task asked for one; an answer too long to report fails the attempt instead."""
    message = running.message
    left = None if message.read_only else handoff.take(message, result)  # for those after it
    if not reports_answer(message) or result.answer is None:
        return TaskSucceeded(**fields, handoff=left)
    answer = clean_text(result.answer)
    too_long = oversize(answer)
    if too_long is not None:
        return TaskFailed(**fields, reason=ANSWER_TOO_LONG, error=too_long)
    return TaskSucceeded(**fields, answer=answer, handoff=left)


def _fields(
    running: Running,
    result: RunResult,
    commit: Commit | None,
    checks: list[GateResult],
    *,
    workspace: Path,
    worker: str,
) -> dict[str, Any]:
    """What every result message of the attempt carries, whatever its verdict."""
    transcript = None
    if result.transcript_path is not None:
        with contextlib.suppress(ValueError):
            transcript = str(result.transcript_path.relative_to(workspace))
    return {
        **about(running.message, worker),
        "exit_code": result.exit_code,
        "commit": commit.sha if commit else None,
        "changed_files": commit.changed_files if commit else [],
        "duration_s": result.duration_s,
        "output_tail": result.output_tail,
        "usage": result.usage,
        "cost_usd": result.cost_usd,
        "model": result.model,
        "transcript_path": transcript,
        "gates": [c.model_dump(mode="json") for c in checks],
    }
