"""`swarm usage` and `swarm prices` against a running orchestrator with `SWARM_PRICES` set: a
claude attempt (its result sent as its adapter would, proven with the attempt's key) and a
shell attempt (run by a real shell adapter) are summed per agent, task and session as the
attempts say; a bad group is one line with the server's code; the price table shows the
override; and a bad `SWARM_PRICES` stops `swarm server` with one line saying why."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from swarm_common.messages import TaskMessage, TaskStarted, TaskSucceeded
from swarm_common.prices import PRICES_AS_OF, PriceTable, parse_prices
from swarm_common.streams import Keys, decode, encode, prove
from tests.conftest import init_repo
from tests.e2e.stack import Stack
from tests.e2e.test_cli import ok, swarm
from tests.waiting import eventually

PRICES = '{"house-model": {"input": 4, "cached_input": 1, "output": 20}}'
USAGE = {"input": 50_000, "cached_input": 10_000, "output": 2_000}


def _task_message(redis: Redis, keys: Keys, agent: str) -> TaskMessage:
    """The task message waiting for an adapter of `agent` (none runs)."""

    def queued() -> TaskMessage | None:
        entries = redis.xrange(keys.tasks(agent))
        message = decode(entries[0][1]).message if entries else None
        return message if isinstance(message, TaskMessage) else None

    return eventually(queued, timeout_s=30, message=f"a {agent} task message")


def _report_as_its_adapter(redis: Redis, keys: Keys, message: TaskMessage) -> None:
    """Start and succeed the attempt as an adapter would, each event proven with its key."""
    about = {
        "session_id": message.session_id,
        "task_id": message.task_id,
        "attempt": message.attempt,
        "worker": "claude-test",
    }
    assert message.event_key is not None
    for event in (
        TaskStarted(**about, branch=message.branch, base_commit=message.base_commit),
        TaskSucceeded(**about, exit_code=0, usage=USAGE, model="house-model-7b", cost_usd=0.42),
    ):
        redis.xadd(keys.events, prove(encode(event), message.event_key))  # type: ignore[arg-type]


def _succeeded(client: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    def there() -> list[dict[str, Any]] | None:
        tasks: list[dict[str, Any]] = client.get(f"/v1/sessions/{session_id}/tasks").json()
        return tasks if all(t["status"] == "succeeded" for t in tasks) else None

    return eventually(there, timeout_s=60, message="both tasks succeed")


def test_usage_is_summed_as_the_attempts_say_and_the_prices_shown(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_orchestrator(SWARM_PRICES=PRICES)
    stack.start_adapter("shell-1")
    url = stack.api_url
    repo = init_repo(tmp_path / "project")
    body = {
        "title": "spend",
        "repo": str(repo),
        "base_ref": "main",
        "settings": {"gates": {"lint": "", "test": "", "build": ""}},
        "tasks": [
            {"key": "think", "agent": "claude", "prompt": "Think hard."},
            {"key": "build", "agent": "shell", "prompt": "echo built > built.txt"},
        ],
    }
    redis = Redis.from_url(stack.redis_url)
    keys = Keys(stack.redis_prefix)
    try:
        with stack.client() as client:
            sid = client.post("/v1/sessions", json=body).json()["id"]
            _report_as_its_adapter(redis, keys, _task_message(redis, keys, "claude"))
            tasks = {t["key"]: t for t in _succeeded(client, sid)}
    finally:
        redis.close()

    table = PriceTable(parse_prices(PRICES))
    claude = table.cost("claude", "house-model-7b", USAGE).usd  # 40k x $4 + 10k x $1 + 2k x $20
    assert claude == Decimal("0.21") and table.entry("claude", "house-model-7b") == "house-model"
    by_agent = json.loads(ok(swarm("usage", "--by", "agent", "--json", url=url)))
    rows = {r["key"]: r for r in by_agent["rows"]}
    assert [r["key"] for r in by_agent["rows"]] == ["claude", "shell"]  # the costliest first
    assert (rows["claude"]["attempts"], Decimal(str(rows["claude"]["cost_usd"]))) == (1, claude)
    assert rows["claude"]["reported_cost_usd"] == 0.42
    assert {k: rows["claude"][k] for k in USAGE} == USAGE and rows["claude"]["tokens"] == 52_000
    assert (rows["shell"]["attempts"], rows["shell"]["cost_usd"]) == (1, 0)
    assert (
        by_agent["total"]["attempts"] == 2 and Decimal(str(by_agent["total"]["cost_usd"])) == claude
    )

    shown = ok(swarm("usage", "--by", "agent", url=url))
    lines = {line.split("│")[1].strip(): line for line in shown.splitlines() if "│" in line}
    assert "$0.2100" in lines["claude"] and "$0.4200" in lines["claude"]
    assert "50.0k" in lines["claude"] and "$0.0000" in lines["shell"]
    assert "$0.2100" in lines["total"]

    per_task = json.loads(
        ok(swarm("usage", "--by", "task", "--session", sid[:8], "--json", url=url))
    )
    assert {r["label"]: r["key"] for r in per_task["rows"]} == {
        k: t["id"] for k, t in tasks.items()
    }
    assert per_task["session_id"] == sid
    by_day = ok(swarm("usage", "--by", "day", url=url))
    assert "Usage by day" in by_day and "day (UTC)" in by_day

    bad = swarm("usage", "--by", "model", url=url)
    assert bad.returncode == 1 and bad.stdout == ""
    assert "[invalid_group_by, HTTP 400]" in " ".join(bad.stderr.split())

    prices = json.loads(ok(swarm("prices", "--json", url=url)))
    assert prices["as_of"] == PRICES_AS_OF and list(prices["overrides"]) == ["house-model"]
    listed = ok(swarm("prices", url=url))
    [house] = [line for line in listed.splitlines() if "house-model" in line]
    assert "SWARM_PRICES" in house and " 20 " in house
    assert f"Prices as of {PRICES_AS_OF}" in listed


def test_bad_prices_stop_the_server_with_one_line(stack: Stack) -> None:
    env = stack.env(SWARM_PRICES='{"house-model": {"input": "four"}}')
    done = subprocess.run(
        [sys.executable, "-m", "swarm_cli", "server", "--port", str(stack.port)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    message = " ".join(done.stderr.split())
    assert "invalid orchestrator setting prices" in message
    assert "SWARM_PRICES['house-model'].input must be a number >= 0" in message
    assert "Traceback" not in done.stderr
