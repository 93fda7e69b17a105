"""Each runner's reading of its CLI's real output: transcripts captured from the real
binaries against the fake server (`data/transcripts.json`, with their exit codes) are fed
through `observe` and `classify`, so every known outcome maps to the right reason."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from swarm_adapter.runners import cli_runner_class
from swarm_adapter.runners.base import RunContext
from swarm_adapter.runners.cli import AgentCliRunner, CliRun
from swarm_adapter.runners.codex import _explain as codex_explain
from swarm_common.messages import TaskMessage
from swarm_common.procs import ProcessResult

DATA = json.loads((Path(__file__).parent / "data" / "transcripts.json").read_text())

EXPECTED = {
    ("claude", "write_file"): ("succeeded", ""),
    ("claude", "rate_limit"): ("failed", "rate_limited"),
    ("claude", "auth_error"): ("failed", "auth"),
    ("claude", "server_error"): ("failed", "model_error"),
    ("claude", "unreachable"): ("failed", "model_unreachable"),
    ("claude", "loop_tools"): ("failed", "turn_limit"),
    ("claude", "hang_api_timeout"): ("failed", "model_unreachable"),
    ("codex", "final-write_file-apply_patch"): ("succeeded", ""),
    ("codex", "final-write_file-exec_command"): ("succeeded", ""),
    ("codex", "final-text-output_schema"): ("succeeded", ""),
    ("codex", "final-rate_limit"): ("failed", "rate_limited"),
    ("codex", "final-rate_limit-chatgpt_usage_limit"): ("failed", "rate_limited"),
    ("codex", "final-auth_error"): ("failed", "auth"),
    ("codex", "final-server_error"): ("failed", "model_error"),
    ("codex", "final-unreachable"): ("failed", "model_unreachable"),
    ("gemini", "write1"): ("succeeded", ""),
    ("gemini", "rl_max1"): ("failed", "rate_limited"),
    ("gemini", "auth400"): ("failed", "auth"),
    ("gemini", "auth401"): ("failed", "auth"),
    ("gemini", "s500_max1"): ("failed", "model_error"),
    ("gemini", "unreach_max1"): ("failed", "model_unreachable"),
    ("gemini", "loop3"): ("failed", "turn_limit"),
    ("gemini", "loop_same"): ("failed", "loop_detected"),
}


def _context(tmp_path: Path, seen: list[tuple[str, str, dict[str, Any]]]) -> RunContext:
    message = TaskMessage(
        session_id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        task_key="t",
        attempt=1,
        agent="claude",
        title="t",
        prompt="p",
        repo="repos/x.git",
        base_commit="a" * 40,
        branch="b",
        timeout_s=60,
    )
    return RunContext(
        message=message,
        worktree=tmp_path,
        home=tmp_path,
        artifacts=tmp_path,
        cancel=asyncio.Event(),
        kill_grace_s=1,
        tail_bytes=1000,
        progress=lambda k, t, d: seen.append((k, t, d)),
    )


def _replay(agent: str, case: str, tmp_path: Path) -> tuple[Any, CliRun, list[Any]]:
    cls = cli_runner_class(agent)
    runner: AgentCliRunner = cls(environ={"PATH": "/bin", cls.key_env: "k" * 12})
    recorded = DATA[agent][case]
    seen: list[tuple[str, str, dict[str, Any]]] = []
    ctx = _context(tmp_path, seen)
    run = CliRun()
    for line in recorded["lines"]:
        runner._read(line, run, ctx)
    proc = ProcessResult(
        exit_code=recorded["exit"], timed_out=False, cancelled=False, tail="", duration_s=1.0
    )
    return runner.classify(proc, run), run, seen


@pytest.mark.parametrize(("agent", "case"), sorted(EXPECTED))
def test_recorded_outcomes_are_classified(agent: str, case: str, tmp_path: Path) -> None:
    result, run, seen = _replay(agent, case, tmp_path)
    assert (result.outcome, result.reason) == EXPECTED[(agent, case)], result.error
    if result.outcome == "succeeded":
        assert run.usage["input"] > 0 and run.usage["output"] > 0
        assert any(kind == "message" for kind, _, _ in seen)


@pytest.mark.parametrize(
    ("agent", "case"),
    [("claude", "write_file"), ("gemini", "write1"), ("codex", "final-write_file-apply_patch")],
)
def test_a_written_file_shows_as_a_tool_call_and_a_file_change(
    agent: str, case: str, tmp_path: Path
) -> None:
    _, run, seen = _replay(agent, case, tmp_path)
    kinds = [kind for kind, _, _ in seen]
    assert "tool_call" in kinds and "file_change" in kinds
    [change] = [text for kind, text, _ in seen if kind == "file_change"]
    assert change.endswith("hello.txt")


def test_usage_and_cost_of_a_claude_run(tmp_path: Path) -> None:
    _, run, _ = _replay("claude", "write_file", tmp_path)
    assert run.usage == {"input": 280, "cached_input": 40, "output": 60}
    assert run.cost_usd is not None and run.cost_usd > 0 and run.turns == 2


@pytest.mark.parametrize(
    ("agent", "case", "model"),
    [
        ("claude", "write_file", "claude-opus-4-8[1m]"),  # its init event names it
        ("gemini", "write1", "gemini-2.5-pro"),
        ("codex", "final-write_file-apply_patch", None),  # says none: the one it was asked
    ],
)
def test_the_model_a_cli_says_it_runs_on_is_kept(
    agent: str, case: str, model: str | None, tmp_path: Path
) -> None:
    _, run, _ = _replay(agent, case, tmp_path)
    assert run.model == model


def test_a_reported_reset_becomes_the_retry_time(tmp_path: Path) -> None:
    result, _, _ = _replay("gemini", "rl_max1", tmp_path)
    assert result.retry_at is not None
    result, _, _ = _replay("codex", "final-rate_limit-chatgpt_usage_limit", tmp_path)
    assert result.retry_at is not None


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "unexpected status 401 Unauthorized: Incorrect API key provided: sk-test-****., "
            "url: http://127.0.0.1:42913/v1/responses",
            "auth",
        ),
        (
            "unexpected status 400 Bad Request: bad input (request id req_4012), "
            "url: http://127.0.0.1:4290/v1/responses",
            "agent_error",
        ),
        ("exceeded retry limit, last status: 429 Too Many Requests", "rate_limited"),
        ("You exceeded your current quota, please check your plan", "rate_limited"),
        ("unexpected status 503 Service Unavailable, url: http://h:1/v1", "model_error"),
    ],
)
def test_codex_failures_are_read_from_the_status_not_the_url(message: str, reason: str) -> None:
    run = CliRun(result_text=message)
    codex_explain(run)
    assert run.reason == reason
