"""Routing of `agent: auto` tasks (`graph/routing.py`): the persona's (or role's) preferred
kinds, what the task needs, live kinds with free slots, then price; the choice and its
reason on the timeline; no kind to take it: pending with the reason, routed once a kind
comes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.capabilities import KIND_CAPABILITIES
from swarm_common.messages import TaskFailed, WorkerOnline
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Task, Worker
from swarm_orchestrator.graph.fleet import KindState
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.graph.routing import UNROUTABLE, RoutingPolicy, choose
from tests.orchestrator.helpers import apply, new_session, outcome_event, task, task_messages

SM = async_sessionmaker[AsyncSession]


def fleet(**slots: tuple[int, int]) -> dict[str, KindState]:
    """Live kinds: `codex=(slots, load)`."""
    return {
        kind: KindState(
            kind=kind, workers=1, slots=s, load=load, capabilities=KIND_CAPABILITIES[kind]
        )
        for kind, (s, load) in slots.items()
    }


EVERY = {"claude": (2, 0), "codex": (2, 0), "gemini": (2, 0), "shell": (2, 0)}


@pytest.mark.parametrize(
    "role,expected",
    [
        ("backend", "codex"),
        ("frontend", "claude"),
        ("design", "gemini"),
        ("pm", "claude"),
        ("data", "codex"),
        ("devops", "codex"),  # the role prefers shell first: an auto task never goes there
        ("qa", "claude"),
        (None, "gemini"),  # no preference: the cheapest
    ],
)
def test_roles_route_to_their_preferred_kinds(role: str | None, expected: str) -> None:
    choice = choose({"agent": "auto"}, role=role, kinds=fleet(**EVERY), policy=RoutingPolicy())
    assert choice.agent == expected, choice.reason
    assert choice.reason.startswith(f"{expected}: ")
    assert [c.agent for c in choice.candidates] == ["claude", "codex", "gemini"]


def test_a_persona_snapshot_prefers_its_own_kinds() -> None:
    spec = {
        "agent": "auto",
        "assigned_persona": {"name": "ada", "role": "backend", "agents": ["gemini", "codex"]},
    }
    choice = choose(spec, role="backend", kinds=fleet(**EVERY), policy=RoutingPolicy())
    assert choice.agent == "gemini"
    assert "persona ada's first choice" in choice.reason


def test_what_a_task_needs_rules_kinds_out() -> None:
    schema = {"agent": "auto", "output_schema": {"type": "object"}}
    choice = choose(schema, role="design", kinds=fleet(**EVERY), policy=RoutingPolicy())
    assert choice.agent == "claude"  # design prefers gemini, which cannot enforce a schema
    gemini = next(c for c in choice.candidates if c.agent == "gemini")
    assert gemini.ruled_out == "cannot enforce an output_schema"

    tools = {"agent": "auto", "allowed_tools": ["Read"]}
    choice = choose(tools, role="backend", kinds=fleet(**EVERY), policy=RoutingPolicy())
    assert choice.agent == "claude"  # backend prefers codex, which cannot limit its tools

    kinds = fleet(**EVERY)
    kinds["codex"] = KindState(
        kind="codex", workers=1, slots=2, capabilities=KIND_CAPABILITIES["codex"],
        models=frozenset({"gpt-5.5"}),
    )  # fmt: skip
    named = {"agent": "auto", "model": "o4-mini"}
    assert choose(named, role="backend", kinds=kinds, policy=RoutingPolicy()).agent == "claude"


def test_a_kind_with_a_free_slot_goes_before_a_busy_preferred_one() -> None:
    busy = fleet(claude=(2, 0), codex=(2, 2), gemini=(1, 0))
    choice = choose({"agent": "auto"}, role="backend", kinds=busy, policy=RoutingPolicy())
    assert choice.agent == "claude"
    every_busy = fleet(claude=(1, 3), codex=(2, 2), gemini=(1, 1))
    choice = choose({"agent": "auto"}, role="backend", kinds=every_busy, policy=RoutingPolicy())
    assert choice.agent == "codex"  # no slot anywhere: the preferred live kind, where it waits


def test_price_breaks_ties_and_can_be_overridden() -> None:
    cheap_claude = RoutingPolicy.with_prices({"claude": 0.5})
    assert choose({}, role=None, kinds=fleet(**EVERY), policy=cheap_claude).agent == "claude"
    choice = choose({}, role=None, kinds=fleet(**EVERY), policy=RoutingPolicy())
    assert "cheapest of claude, codex, gemini" in choice.reason


def test_no_live_kind_that_can_take_it_leaves_it_unrouted_with_the_reason() -> None:
    choice = choose(
        {"agent": "auto"}, role="devops", kinds=fleet(shell=(4, 0)), policy=RoutingPolicy()
    )
    assert choice.agent is None
    assert choice.reason.startswith(UNROUTABLE)
    assert "claude has no live adapter (ever)" in choice.reason
    assert all(c.ruled_out for c in choice.candidates)


# -- through the scheduler ------------------------------------------------------------------


async def _online(sessionmaker: SM, keys: Keys, *kinds: str, concurrency: int = 2) -> None:
    for kind in kinds:
        online = WorkerOnline(
            worker=f"{kind}-1",
            agent=kind,
            host="h",
            pid=1,
            concurrency=concurrency,
            capabilities=sorted(KIND_CAPABILITIES[kind]),
        )
        assert await apply(sessionmaker, keys, online) == Outcome.APPLIED


async def _tasks(sessionmaker: SM, session_id: str) -> dict[str, Task]:
    async with sessionmaker() as db:
        rows = await db.scalars(select(Task).where(Task.session_id == uuid.UUID(session_id)))
        return {t.key: t for t in rows}


async def _events(api: httpx.AsyncClient, task_id: uuid.UUID) -> list[dict[str, Any]]:
    response = await api.get(f"/v1/tasks/{task_id}/events")
    assert response.status_code == 200, response.text
    body = response.json()
    entries: list[dict[str, Any]] = body["events"] if isinstance(body, dict) else body
    return entries


async def test_auto_tasks_are_routed_when_queued_and_say_why(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, keys: Keys
) -> None:
    sm = state.sessionmaker
    await _online(sm, keys, "claude", "codex", "gemini")
    session = await new_session(
        api,
        git_repo,
        [
            task("api", prompt="Add the endpoint", agent="auto", role="backend"),
            task("page", prompt="Add the page", agent="auto", role="frontend"),
            task("look", prompt="Design it", agent="auto", role="design"),
            task("form", prompt="Answer", agent="auto", role="design", output_schema={}),
            task("cmd", prompt="true", agent="shell"),
        ],
    )
    tasks = await _tasks(sm, session["id"])
    routed = {k: (t.status, t.agent, t.spec["agent"]) for k, t in tasks.items()}
    assert routed == {
        "api": ("queued", "codex", "auto"),
        "page": ("queued", "claude", "auto"),
        "look": ("queued", "gemini", "auto"),
        "form": ("queued", "claude", "auto"),
        "cmd": ("queued", "shell", "shell"),
    }
    [message] = await task_messages(sm, tasks["api"].id)
    assert message.agent == "codex"
    entries = await _events(api, tasks["api"].id)
    [entry] = [e for e in entries if e["type"] == "task.routed"]
    assert entry["data"]["agent"] == "codex"
    assert entry["data"]["reason"] == (
        "codex: 2 free slots; role backend's first choice of codex, claude, gemini"
    )
    assert {c["agent"] for c in entry["data"]["candidates"]} == {"claude", "codex", "gemini"}
    assert not [e for e in await _events(api, tasks["cmd"].id) if e["type"] == "task.routed"]


async def test_a_burst_of_auto_tasks_spreads_over_free_slots(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, keys: Keys
) -> None:
    await _online(state.sessionmaker, keys, "claude", "codex", concurrency=1)
    session = await new_session(
        api,
        git_repo,
        [task(f"t{n}", prompt="Work", agent="auto", role="backend") for n in range(3)],
    )
    agents = sorted(t.agent for t in (await _tasks(state.sessionmaker, session["id"])).values())
    assert agents == ["claude", "codex", "codex"]  # one slot each, then the preferred one


async def test_no_live_kind_keeps_an_auto_task_pending_until_one_comes(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, keys: Keys
) -> None:
    sm = state.sessionmaker
    session = await new_session(
        api, git_repo, [task("api", prompt="Add the endpoint", agent="auto", role="backend")]
    )
    for _ in range(2):  # the sweep asks again; the timeline says it once
        await state.background.sweep_once()
    api_task = (await _tasks(sm, session["id"]))["api"]
    assert (api_task.status, api_task.agent) == ("pending", "auto")
    assert api_task.reason is not None and api_task.reason.startswith(UNROUTABLE)
    assert await task_messages(sm, api_task.id) == []
    entries = await _events(api, api_task.id)
    assert [e["type"] for e in entries].count("task.unroutable") == 1

    await _online(sm, keys, "claude")
    assert await state.background.sweep_once() == 1
    api_task = (await _tasks(sm, session["id"]))["api"]
    assert (api_task.status, api_task.agent, api_task.reason) == ("queued", "claude", None)
    [message] = await task_messages(sm, api_task.id)
    assert message.agent == "claude"


async def test_a_retry_is_routed_again(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, keys: Keys
) -> None:
    sm = state.sessionmaker
    await _online(sm, keys, "codex")
    session = await new_session(
        api,
        git_repo,
        [task("api", prompt="Add it", agent="auto", role="backend", max_attempts=2)],
    )
    first = (await _tasks(sm, session["id"]))["api"]
    assert first.agent == "codex"
    await _online(sm, keys, "claude")
    async with sm() as db, db.begin():  # codex's adapter is gone (as the registry would say)
        await db.execute(update(Worker).where(Worker.agent == "codex").values(status="offline"))
    failed = outcome_event(TaskFailed, session["id"], first.id, reason="exit_code", exit_code=1)
    assert await apply(sm, keys, failed) == Outcome.APPLIED
    await state.background.sweep_once()  # its retry time may be now or soon
    again = (await _tasks(sm, session["id"]))["api"]
    if again.status == "pending":  # backoff: the retry is due later; ask for it now
        async with sm() as db, db.begin():
            await db.execute(update(Task).where(Task.id == again.id).values(retry_at=None))
        await state.background.sweep_once()
        again = (await _tasks(sm, session["id"]))["api"]
    assert (again.status, again.attempt, again.agent) == ("queued", 2, "claude")
