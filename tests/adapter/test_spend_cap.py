"""A task's own spend cap while its agent runs (`swarm_adapter/spend_cap.py`, held by
`runners/cli.py`): the cap comes from the session settings the task message carries, the
usage a CLI streams is priced as the orchestrator prices it, and a run that passes the cap
is stopped at once and fails with `budget_exhausted`; one whose closing event is the first
to pass it has ended and stands. Driven with a stand-in `claude` that prints Claude Code's
stream-json lines and then waits, so the test shows the stop, not the CLI's own end."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from swarm_adapter.runners.base import RunContext
from swarm_adapter.runners.claude import ClaudeRunner
from swarm_adapter.runners.cli import CliRun
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.spend_cap import SpendCap, price_table
from swarm_common.messages import TaskMessage
from swarm_common.prices import PriceTable

MODEL = "claude-sonnet-4-5"
INPUT_PER_CALL = 100_000
"""Tokens of input each model call of the stand-in reports: $0.30 on `MODEL`."""


def _message(budget: dict[str, Any] | None) -> TaskMessage:
    return TaskMessage(
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
        timeout_s=120,
        settings={"budget": budget} if budget is not None else {},
    )


def _context(tmp_path: Path, message: TaskMessage) -> RunContext:
    for name in ("work", "home", "artifacts"):
        (tmp_path / name).mkdir(exist_ok=True)
    return RunContext(
        message=message,
        worktree=tmp_path / "work",
        home=tmp_path / "home",
        artifacts=tmp_path / "artifacts",
        cancel=asyncio.Event(),
        kill_grace_s=1,
        tail_bytes=10_000,
        progress=lambda kind, text, data: None,
    )


def _call(ident: str) -> dict[str, Any]:
    """An `assistant` event as Claude Code prints one per content block of a model call."""
    usage = {"input_tokens": INPUT_PER_CALL, "cache_read_input_tokens": 0, "output_tokens": 1}
    return {
        "type": "assistant",
        "message": {"id": ident, "model": MODEL, "content": [], "usage": usage},
    }


def _stand_in(tmp_path: Path, calls: int, *, then: str) -> Path:
    """A `claude` that prints an init event and `calls` model calls (each twice, as the CLI
    repeats a call per content block), then `then`: `wait` (for an hour) or `result` (its
    closing event, with totals, and exit 0)."""
    lines = [{"type": "system", "subtype": "init", "model": MODEL}]
    for n in range(calls):
        lines += [_call(f"msg_{n}"), _call(f"msg_{n}")]
    total = {"input_tokens": INPUT_PER_CALL * calls * 10, "output_tokens": 1000}
    result = {"type": "result", "subtype": "success", "is_error": False, "usage": total}
    body = "\n".join(json.dumps(line) for line in lines)
    script = tmp_path / "claude"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        f"print({body!r}, flush=True)\n"
        + (
            f"print({json.dumps(result)!r}, flush=True)\n"
            if then == "result"
            else "time.sleep(3600)\n"
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _runner(binary: Path) -> ClaudeRunner:
    settings = AdapterSettings(agent="claude", claude_path=binary)
    return ClaudeRunner(
        settings=settings, environ={"PATH": os.environ["PATH"], "ANTHROPIC_API_KEY": "k" * 20}
    )


def test_the_cap_comes_from_the_session_settings_the_message_carries() -> None:
    table = PriceTable()
    assert SpendCap.of(_message(None), kind="claude", table=table) is None
    assert SpendCap.of(_message({"usd": 5}), kind="claude", table=table) is None
    assert SpendCap.of(_message({"per_task_usd": "x"}), kind="claude", table=table) is None
    cap = SpendCap.of(_message({"per_task_usd": 0.5}), kind="claude", table=table)
    assert cap is not None and cap.usd == Decimal("0.5")
    assert cap.passed({"input": 1_000_000}, MODEL) is not None  # $3
    assert cap.passed({"input": 100_000}, MODEL) is None  # $0.30
    # An operator's prices hold here as they do for the orchestrator.
    dear = price_table({"SWARM_PRICES": json.dumps({MODEL: {"input": 10, "output": 10}})})
    assert SpendCap(Decimal("0.5"), "claude", dear).passed({"input": 100_000}, MODEL) is not None
    assert price_table({"SWARM_PRICES": "{nonsense"}).prices == PriceTable().prices


def test_claude_usage_is_summed_per_model_call_as_it_streams(tmp_path: Path) -> None:
    runner = _runner(tmp_path / "none")
    run, ctx = CliRun(), _context(tmp_path, _message(None))
    for ident in ("msg_a", "msg_a", "msg_b"):
        runner._read(json.dumps(_call(ident)), run, ctx)
    assert run.usage == {"input": 2 * INPUT_PER_CALL, "cached_input": 0, "output": 2}


async def test_a_run_past_its_cap_is_stopped_and_fails_with_budget_exhausted(
    tmp_path: Path,
) -> None:
    runner = _runner(_stand_in(tmp_path, calls=3, then="wait"))  # $0.90 and waits an hour
    ctx = _context(tmp_path, _message({"per_task_usd": 0.5}))
    result = await asyncio.wait_for(runner.run(ctx), timeout=60)
    assert (result.outcome, result.reason) == ("failed", "budget_exhausted"), result.error
    assert "0.5" in result.error and result.duration_s < 30
    assert result.usage["input"] >= 2 * INPUT_PER_CALL  # what it said, each call once
    assert result.model == MODEL


async def test_a_run_under_its_cap_or_without_one_is_not_stopped(tmp_path: Path) -> None:
    # Its closing event is the first to pass the cap: it has ended, and stands.
    runner = _runner(_stand_in(tmp_path, calls=1, then="result"))
    result = await runner.run(_context(tmp_path, _message({"per_task_usd": 0.5})))
    assert (result.outcome, result.reason) == ("succeeded", ""), result.error
    assert result.usage["input"] == INPUT_PER_CALL * 10  # the closing totals replace the sums
    result = await runner.run(_context(tmp_path, _message({"usd": 0.01})))
    assert result.outcome == "succeeded", result.error
