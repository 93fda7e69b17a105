"""The agent's final answer (`swarm_adapter.answers`): unwrapped from a code fence, reported
for read-only and `output_schema` tasks only, too long fails the attempt; and a read-only
attempt runs its agent alone (no setup, no gates, no commit) and keeps nothing it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from swarm_adapter.answers import oversize, unfenced
from swarm_adapter.outcome import result_message
from swarm_adapter.runners.base import RunResult
from swarm_adapter.runners.shell import ShellRunner
from swarm_adapter.running import Running
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worker import Adapter
from swarm_adapter.worktree import Commit
from swarm_common.messages import MAX_ANSWER_CHARS
from swarm_common.streams import Keys
from tests.adapter.helpers import Mirror, events, message, send
from tests.conftest import branch_commit, commits_touching

PLAN = '{"tasks": ["a", "b"]}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"```json\n{PLAN}\n```", PLAN),
        (f"```\n{PLAN}\n```", PLAN),
        (f"\n  ```json  \n{PLAN}\n```\n\n", PLAN),
        (f"```json\r\n{PLAN}\r\n```", PLAN),
        (f"```json\n\n{PLAN}\n\n```", PLAN),
        ("```json\n[\n  1,\n  2\n]\n```", "[\n  1,\n  2\n]"),
        (PLAN, PLAN),
        ("  plain text, kept as it is \n", "  plain text, kept as it is \n"),
        (f"Here is the plan:\n```json\n{PLAN}\n```", f"Here is the plan:\n```json\n{PLAN}\n```"),
        (f"```python\n{PLAN}\n```", f"```python\n{PLAN}\n```"),
        ("```json\n{}\n```\nand\n```json\n{}\n```", "```json\n{}\n```\nand\n```json\n{}\n```"),
        ("```json {}```", "```json {}```"),
        ("", ""),
    ],
)
def test_a_fence_around_the_whole_answer_is_taken_off(text: str, expected: str) -> None:
    assert unfenced(text) == expected


def test_an_answer_up_to_the_limit_is_reported() -> None:
    assert oversize("x" * MAX_ANSWER_CHARS) is None
    said = oversize("x" * (MAX_ANSWER_CHARS + 1))
    assert said is not None and str(MAX_ANSWER_CHARS + 1) in said


# --- the verdict ------------------------------------------------------------------------


def _verdict(mirror: Mirror, answer: str | None, commit: Commit | None, **task: Any) -> Any:
    msg = message(mirror, "plan", **task)
    running = Running(message=msg, entry_id=b"1-0", worktree=Path("/nonexistent"))
    result = RunResult(outcome="succeeded", exit_code=0, answer=answer)
    return result_message(running, result, commit, [], "strict", workspace=Path("/w"), worker="w")


def test_a_read_only_run_reports_its_answer_without_a_commit(mirror: Mirror) -> None:
    reported = _verdict(mirror, PLAN, None, read_only=True)
    assert (reported.TYPE, reported.answer) == ("task.succeeded", PLAN)
    assert reported.commit is None and reported.changed_files == []


def test_a_task_with_a_schema_reports_its_answer_beside_its_commit(mirror: Mirror) -> None:
    commit = Commit(sha="b" * 40, changed_files=["a.py"])
    reported = _verdict(mirror, PLAN, commit, output_schema={"type": "object"})
    assert (reported.TYPE, reported.answer) == ("task.succeeded", PLAN)
    assert (reported.commit, reported.changed_files) == ("b" * 40, ["a.py"])


def test_an_other_task_reports_no_answer(mirror: Mirror) -> None:
    reported = _verdict(mirror, "Done: wrote the file.", Commit(sha="b" * 40, changed_files=[]))
    assert (reported.TYPE, reported.answer) == ("task.succeeded", None)


def test_an_answer_too_long_fails_the_attempt(mirror: Mirror) -> None:
    reported = _verdict(mirror, "x" * (MAX_ANSWER_CHARS + 1), None, read_only=True)
    assert (reported.TYPE, reported.reason) == ("task.failed", "answer_too_long")
    assert str(MAX_ANSWER_CHARS) in reported.error


def test_a_nul_in_an_answer_is_replaced(mirror: Mirror) -> None:
    reported = _verdict(mirror, "a\x00b", None, read_only=True)
    assert reported.answer == "a\ufffdb"


# --- a read-only attempt ----------------------------------------------------------------


async def test_a_read_only_attempt_runs_no_setup_or_gate_and_keeps_nothing(
    adapter_settings: AdapterSettings, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    """Even an agent that commits on its branch itself leaves nothing behind. (It can only
    without the sandbox, whose refs are read-only: `test_sandbox`.)"""
    unsandboxed = adapter_settings.model_copy(update={"sandbox": "off"})
    adapter = Adapter(settings=unsandboxed, redis=redis, runner=ShellRunner())
    settings = {
        "setup": {"command": f"touch {tmp_path}/setup-ran; exit 4"},
        "gates": {"lint": "", "build": "", "test": f"touch {tmp_path}/gate-ran; exit 1"},
    }
    agent = (
        "echo work > work.txt && git add work.txt && "
        "git -c user.name=a -c user.email=a@a commit -q -m work"
    )
    msg = message(mirror, agent, read_only=True, settings=settings)
    await send(redis, keys, adapter, msg)
    assert await adapter.process_available() == 1
    result = (await events(redis, keys))[-1]

    assert result.TYPE == "task.succeeded", result
    assert result.commit is None and result.changed_files == [] and result.gates == []
    assert result.answer is None  # the shell agent gives none
    assert not (tmp_path / "setup-ran").exists() and not (tmp_path / "gate-ran").exists()
    assert branch_commit(mirror.path, msg.branch) == mirror.base
    assert commits_touching(mirror.path, "work.txt") == []
    assert not adapter.worktrees.path(msg).exists()
