"""The attempt pipeline (`swarm_adapter.attempt`) on its own, without Redis: a real session
mirror and git, the real shell runner, and an in-memory reporter for events and cancels."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from swarm_adapter.attempt import AttemptPipeline
from swarm_adapter.runners.shell import ShellRunner
from swarm_adapter.running import Running
from swarm_adapter.sandbox import Sandboxing
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worktree import Worktrees
from swarm_common import git
from swarm_common.messages import Message, TaskMessage, TaskProgress
from swarm_common.redaction import Redactor
from tests.adapter.helpers import Mirror, message
from tests.conftest import branch_commit
from tests.waiting import wait_until

WORKER = "attempt-test"
SECRET = "attempt-test-secret-value-1234"


@dataclass
class MemoryReporter:
    """A `running.Reporter` that keeps what it is given."""

    events: list[Message] = field(default_factory=list)
    cancels: dict[tuple[uuid.UUID, int], str] = field(default_factory=dict)

    async def publish(self, event: Message, *, retry: bool = True) -> None:
        self.events.append(event)

    async def cancel_request(self, message: TaskMessage) -> str | None:
        return self.cancels.get((message.task_id, message.attempt))

    def types(self) -> list[str]:
        return [e.TYPE for e in self.events]


@pytest.fixture
def reporter() -> MemoryReporter:
    return MemoryReporter()


def shell_pipeline(
    workspace: Path, reporter: MemoryReporter, *, sandboxing: Sandboxing | None = None
) -> AttemptPipeline:
    """The pipeline of a shell adapter (`sandboxing`: none unless given)."""
    settings = AdapterSettings(
        workspace=workspace,
        agent="shell",
        worker_name=WORKER,
        kill_grace_s=1.0,
        allow_shell_agent=True,
    )
    return AttemptPipeline(
        settings=settings,
        worktrees=Worktrees(workspace),
        runner=ShellRunner(),
        sandboxing=sandboxing,
        redact=Redactor([SECRET]),
        secrets=[SECRET],
        reporter=reporter,
    )


@pytest.fixture
def pipeline(workspace: Path, reporter: MemoryReporter) -> AttemptPipeline:
    return shell_pipeline(workspace, reporter)


def running_for(pipeline: AttemptPipeline, msg: TaskMessage) -> Running:
    return Running(message=msg, entry_id=b"1-0", worktree=pipeline.worktrees.path(msg))


async def run(pipeline: AttemptPipeline, running: Running) -> Any:
    """The attempt's result message (typed `Any`: tests read each type's own fields); its
    worktree is removed afterwards, as the adapter does."""
    try:
        return await pipeline.run(running)
    finally:
        await pipeline.worktrees.remove(running.message)


def no_gates(**extra: Any) -> dict[str, Any]:
    return {"gates": {"lint": "", "test": "", "build": "", **extra}}


async def test_a_succeeded_attempt_commits_on_its_branch(
    pipeline: AttemptPipeline, reporter: MemoryReporter, mirror: Mirror
) -> None:
    msg = message(mirror, "mkdir -p src && echo 'print(1)' > src/app.py")
    result = await run(pipeline, running_for(pipeline, msg))
    assert result.TYPE == "task.succeeded", result
    assert (result.worker, result.task_id, result.attempt) == (WORKER, msg.task_id, 1)
    assert result.changed_files == ["src/app.py"]
    assert result.commit != mirror.base
    assert branch_commit(mirror.path, msg.branch) == result.commit
    shown = git.git("show", f"{result.commit}:src/app.py", git_dir=mirror.path).stdout
    assert shown == "print(1)\n"
    # The pipeline reports its start; the result is the caller's to publish.
    assert reporter.types()[0] == "task.started"
    assert "task.succeeded" not in reporter.types()


async def test_a_failing_command_fails_with_its_reason_and_commits_nothing(
    pipeline: AttemptPipeline, mirror: Mirror
) -> None:
    msg = message(mirror, "echo something broke; exit 3")
    result = await run(pipeline, running_for(pipeline, msg))
    assert (result.TYPE, result.reason, result.exit_code) == ("task.failed", "exit_code", 3)
    assert "something broke" in result.output_tail
    assert result.commit == mirror.base and result.changed_files == []


async def test_a_failed_attempt_commits_its_work_in_progress_and_reports_it(
    pipeline: AttemptPipeline, mirror: Mirror
) -> None:
    """What an agent changed before it failed (a rate limit, say) stays on the task's
    branch as a `wip:` commit, for an attempt that takes over (`graph.failover`)."""
    msg = message(mirror, "echo half > half.txt; exit 3")
    result = await run(pipeline, running_for(pipeline, msg))
    assert (result.TYPE, result.reason) == ("task.failed", "exit_code")
    assert result.commit != mirror.base and result.changed_files == ["half.txt"]
    assert branch_commit(mirror.path, msg.branch) == result.commit
    text = git.git("log", "-1", "--format=%B", result.commit, git_dir=mirror.path).stdout
    assert text.startswith("wip: Task t1\n") and "Swarm-Status: failed" in text
    assert result.transcript_summary is None  # a shell command says nothing of its own


async def test_a_failing_gate_fails_a_succeeded_agent(
    pipeline: AttemptPipeline, reporter: MemoryReporter, mirror: Mirror
) -> None:
    msg = message(mirror, "echo work > work.txt", settings=no_gates(test="exit 1"))
    result = await run(pipeline, running_for(pipeline, msg))
    assert (result.TYPE, result.reason) == ("task.failed", "gate_failed")
    assert [(g["name"], g["status"]) for g in result.gates] == [("test", "failed")]
    assert result.changed_files == ["work.txt"]  # committed, for review
    progress = [e for e in reporter.events if isinstance(e, TaskProgress)]
    assert [e.data["gate"] for e in progress] == ["test"]


async def test_a_failing_setup_command_fails_before_the_agent_runs(
    pipeline: AttemptPipeline, mirror: Mirror, tmp_path: Path
) -> None:
    settings = {**no_gates(), "setup": {"command": "echo no deps; exit 4"}}
    msg = message(mirror, f"touch {tmp_path}/ran", settings=settings)
    result = await run(pipeline, running_for(pipeline, msg))
    assert (result.TYPE, result.reason) == ("task.failed", "setup_failed")
    assert [(g["name"], g["status"]) for g in result.gates] == [("setup", "failed")]
    assert not (tmp_path / "ran").exists()


async def test_a_write_outside_the_worktree_is_refused_and_the_branch_put_back(
    pipeline: AttemptPipeline, mirror: Mirror, workspace: Path
) -> None:
    msg = message(mirror, "echo work > work.txt && echo x > ../../outside.txt")
    result = await run(pipeline, running_for(pipeline, msg))
    assert (result.TYPE, result.reason) == ("task.failed", "workspace_escape"), result
    assert "worktrees/outside.txt (created)" in result.error
    assert str(workspace) not in result.error
    assert branch_commit(mirror.path, msg.branch) == mirror.base


async def test_a_secret_written_by_the_agent_is_redacted_before_the_commit(
    pipeline: AttemptPipeline, mirror: Mirror
) -> None:
    msg = message(mirror, f"echo 'token={SECRET}' > conf.txt", settings=no_gates())
    result = await run(pipeline, running_for(pipeline, msg))
    assert result.TYPE == "task.succeeded", result
    committed = git.git("show", f"{result.commit}:conf.txt", git_dir=mirror.path).stdout
    assert committed.startswith("token=") and SECRET not in committed


async def test_a_cancel_requested_before_the_run_cancels_it_unstarted(
    pipeline: AttemptPipeline, reporter: MemoryReporter, mirror: Mirror, tmp_path: Path
) -> None:
    msg = message(mirror, f"touch {tmp_path}/ran")
    reporter.cancels[(msg.task_id, msg.attempt)] = "cancelled by test"
    running = running_for(pipeline, msg)
    result = await run(pipeline, running)
    assert (result.TYPE, result.reason) == ("task.cancelled", "cancelled by test")
    assert reporter.events == []  # not even `task.started`
    assert not (tmp_path / "ran").exists()
    assert branch_commit(mirror.path, msg.branch) is None


async def test_a_cancel_during_the_run_stops_the_agent(
    pipeline: AttemptPipeline, mirror: Mirror, tmp_path: Path
) -> None:
    msg = message(mirror, f"touch {tmp_path}/go; sleep 60", settings=no_gates())
    running = running_for(pipeline, msg)
    attempt = asyncio.create_task(run(pipeline, running))
    await wait_until(lambda: (tmp_path / "go").exists())
    running.request_cancel("stopped by test")
    result = await asyncio.wait_for(attempt, timeout=15)
    assert (result.TYPE, result.reason) == ("task.cancelled", "stopped by test")


async def test_a_fenced_attempt_commits_nothing(
    pipeline: AttemptPipeline, mirror: Mirror, tmp_path: Path
) -> None:
    msg = message(mirror, f"echo work > work.txt; touch {tmp_path}/go; sleep 60")
    running = running_for(pipeline, msg)
    attempt = asyncio.create_task(run(pipeline, running))
    await wait_until(lambda: (tmp_path / "go").exists())
    running.fence("lease_lost")
    result = await asyncio.wait_for(attempt, timeout=15)
    assert (result.TYPE, result.reason) == ("task.cancelled", "lease_lost")
    assert result.commit is None
    assert branch_commit(mirror.path, msg.branch) == mirror.base
