"""Runs that answer (a planner's, a verifier's): each real CLI, run by the adapter (in this
process, on real Redis and git) against the fake model server's `answer` scenario.

A read-only task with an output schema reports the model's final answer, commits nothing,
and keeps nothing of what the agent tried to write: the CLI runs read-only (what each CLI
is offered is pinned below) and the adapter discards the worktree either way. The fake's
`answers` come one per run, in turn, as a planner's repair round needs them. An
`output_schema` task that is not read-only reports its answer beside its commit.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from swarm_adapter.runners import cli_runner_class
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worker import Adapter
from swarm_common import git
from swarm_common.messages import TaskMessage
from swarm_common.streams import Keys, encode
from tests.adapter.helpers import Mirror, events, message
from tests.agents import fake_codex
from tests.agents.clis import install
from tests.agents.conftest import CASES
from tests.agents.fakeserver import FakeModelServer, Scenario
from tests.conftest import branch_commit, commits_touching

READY = ["claude", "codex", "gemini"]
agents = pytest.mark.parametrize("answering", READY, indirect=True)

SCHEMA = {
    "type": "object",
    "properties": {"tasks": {"type": "array", "items": {"type": "string"}}},
    "required": ["tasks"],
    "additionalProperties": False,
}
PLAN = json.dumps({"tasks": ["write the API", "write its tests"]})
WRITTEN = "planned.txt"
"""What the model tries to write before it answers."""


@dataclass
class Answering:
    """An adapter of one agent CLI, its fake model and a session's mirror."""

    agent: str
    adapter: Adapter
    server: FakeModelServer
    mirror: Mirror
    redis: Redis
    keys: Keys

    async def run(self, scenario: Scenario, *messages: TaskMessage) -> list[Any]:
        """The result event of each message, run one after the other."""
        self.server.scenario = scenario
        await self.adapter.setup()
        for msg in messages:
            await self.redis.xadd(self.keys.tasks(self.agent), encode(msg))  # type: ignore[arg-type]
        assert await self.adapter.process_available() == len(messages)
        results = {
            e.task_id: e
            for e in await events(self.redis, self.keys)
            if e.TYPE in ("task.succeeded", "task.failed", "task.cancelled")
        }
        return [results[m.task_id] for m in messages]

    def task(self, key: str = "plan", **extra: Any) -> TaskMessage:
        fields: dict[str, Any] = {"read_only": True, "output_schema": SCHEMA, **extra}
        return message(
            self.mirror,
            "Plan the work: list the tasks.",
            key=key,
            agent=self.agent,
            timeout_s=120,
            **fields,
        )

    def model_requests(self) -> list[dict[str, Any]]:
        """The requests that asked the model for a turn (no side calls)."""
        return [
            r["body"]
            for r in self.server.state.requests
            if r["path"] in ("/v1/messages", fake_codex.PATH)
            or r["path"].endswith(":streamGenerateContent")
        ]


@pytest.fixture
def mirror(workspace: Path, git_repo: Path) -> Mirror:
    session_id = uuid.uuid4()
    path = workspace / "repos" / f"{session_id}.git"
    git.clone_bare(str(git_repo), path)
    return Mirror(session_id=session_id, path=path, base=git.resolve_commit(path, "main"))


@pytest.fixture
async def answering(
    request: pytest.FixtureRequest,
    redis: Redis,
    keys: Keys,
    redis_url: str,
    redis_prefix: str,
    workspace: Path,
    mirror: Mirror,
) -> AsyncIterator[Answering]:
    case = CASES[request.param]
    binary: dict[str, Any] = {f"{case.agent}_path": install(case.agent)}
    settings = AdapterSettings(
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        workspace=workspace,
        agent=case.agent,
        worker_name=f"{case.agent}-answers",
        heartbeat_interval_s=0.5,
        kill_grace_s=2.0,
        shutdown_grace_s=2.0,
        **binary,
    )
    with FakeModelServer(Scenario(mode="answer")) as server:
        environ = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            case.key_env: f"{case.key_prefix}{uuid.uuid4().hex}",
            case.url_env: server.url + case.url_suffix,
        }
        runner = cli_runner_class(case.agent)(settings, environ)
        adapter = Adapter(settings=settings, redis=redis, runner=runner)
        yield Answering(case.agent, adapter, server, mirror, redis, keys)


def _offered_read_only(agent: str, first: dict[str, Any], headers: dict[str, str]) -> None:
    """The CLI ran read-only, as its first request to the model shows."""
    if agent == "claude":  # `--tools`: only the read tools, and the structured answer
        assert sorted(t["name"] for t in first["tools"]) == [
            "Glob",
            "Grep",
            "Read",
            "StructuredOutput",
        ]
        [structured] = [t for t in first["tools"] if t["name"] == "StructuredOutput"]
        assert structured["input_schema"] == SCHEMA
    elif agent == "codex":  # the read-only sandbox; the schema goes to the model
        assert json.loads(headers["x-codex-turn-metadata"])["sandbox_mode"] == "read-only"
        assert first["text"]["format"] == {
            "type": "json_schema",
            "strict": True,
            "schema": SCHEMA,
            "name": "codex_output_schema",
        }
    else:  # plan mode: no shell tool
        names = {f["name"] for t in first["tools"] for f in t.get("functionDeclarations", [])}
        assert "run_shell_command" not in names and "write_file" in names


def _write_refused(agent: str, last: dict[str, Any]) -> str:
    """What the CLI answered the model's write call with (in its last request)."""
    if agent == "claude":
        results = [
            block
            for turn in last["messages"]
            if isinstance(turn["content"], list)
            for block in turn["content"]
            if block.get("type") == "tool_result"
        ]
        assert results[0].get("is_error") is True, results
        return json.dumps(results[0]["content"])
    if agent == "codex":
        return str(fake_codex.tool_outputs(last)[0]["output"])
    [response] = [
        part["functionResponse"]["response"]
        for turn in last["contents"]
        for part in turn["parts"]
        if "functionResponse" in part
    ]
    return str(response["error"])


def _nowhere_committed(mirror: Mirror, path: str) -> None:
    """No commit of any branch holds `path`, and each branch is where it started."""
    assert commits_touching(mirror.path, path) == []
    heads = git.git("for-each-ref", "--format=%(objectname)", "refs/heads", git_dir=mirror.path)
    assert set(heads.stdout.split()) == {mirror.base}


@agents
async def test_a_read_only_run_reports_the_answer_and_keeps_nothing(
    answering: Answering,
) -> None:
    task = answering.task()
    scenario = Scenario(mode="answer", answers=[PLAN], write_first=True, file=WRITTEN)
    [result] = await answering.run(scenario, task)

    assert result.TYPE == "task.succeeded", result
    assert json.loads(result.answer) == json.loads(PLAN)
    assert result.commit is None and result.changed_files == [] and result.gates == []
    requests = answering.model_requests()
    headers = answering.server.state.requests[0]["headers"]
    _offered_read_only(answering.agent, requests[0], headers)
    refusal = _write_refused(answering.agent, requests[-1])
    assert refusal, "the model's write was answered"
    assert branch_commit(answering.mirror.path, task.branch) == answering.mirror.base
    _nowhere_committed(answering.mirror, WRITTEN)
    assert not answering.adapter.worktrees.path(task).exists()


@agents
async def test_answers_come_one_per_run_in_turn(answering: Answering) -> None:
    """A planner's repair round: the first run answers no JSON, the second a plan in a code
    fence, which the adapter unwraps."""
    fenced = f"```json\n{PLAN}\n```"
    scenario = Scenario(mode="answer", answers=["This is no plan.", fenced])
    first, second = answering.task("plan"), answering.task("plan-again")
    results = await answering.run(scenario, first, second)

    assert [r.TYPE for r in results] == ["task.succeeded", "task.succeeded"], results
    assert [r.answer for r in results] == ["This is no plan.", PLAN]
    assert answering.server.state.answered == 2


@agents
async def test_a_task_with_a_schema_that_changes_files_reports_its_answer_and_commit(
    answering: Answering,
) -> None:
    no_gates = {"gates": {"lint": "", "test": "", "build": ""}}
    task = answering.task("verify", read_only=False, settings=no_gates)
    scenario = Scenario(mode="answer", answers=[PLAN], write_first=True, file=WRITTEN)
    [result] = await answering.run(scenario, task)

    assert result.TYPE == "task.succeeded", result
    assert json.loads(result.answer) == json.loads(PLAN)
    assert result.changed_files == [WRITTEN]
    assert branch_commit(answering.mirror.path, task.branch) == result.commit


@pytest.mark.parametrize("answering", ["claude"], indirect=True)
async def test_claude_asks_again_for_a_text_answer_then_takes_it(answering: Answering) -> None:
    """Given a schema, Claude Code tells a model that answers in text to call its
    `StructuredOutput` tool, once; then it ends the run with the text (a success)."""
    [result] = await answering.run(Scenario(mode="answer", answers=["No plan."]), answering.task())

    assert (result.TYPE, result.answer) == ("task.succeeded", "No plan.")
    first, again = answering.model_requests()
    assert "structured-output-enforce" not in json.dumps(first["messages"])
    reminder = again["messages"][-1]["content"][-1]["text"]
    assert reminder.startswith("[structured-output-enforce] You MUST call the StructuredOutput")


@pytest.mark.parametrize("answering", ["claude"], indirect=True)
async def test_claude_fails_an_answer_that_never_fits_the_schema(answering: Answering) -> None:
    """Claude Code checks the `StructuredOutput` call against the schema and gives up after
    five that do not fit."""
    misfit = json.dumps({"steps": ["not what the schema asks"]})
    [result] = await answering.run(Scenario(mode="answer", answers=[misfit]), answering.task())

    assert (result.TYPE, result.reason) == ("task.failed", "invalid_answer"), result
    assert "structured output" in result.error
    assert len(answering.model_requests()) == 5
