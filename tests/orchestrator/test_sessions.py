"""Accepting a large graph (`graph/sessions.py`): 10,000 tasks in one request by default,
stored whole (tasks, edges, timeline entries) in one transaction, the first ready ones
queued at once and the others by the scheduler's sweep; a bad graph of that size is still
refused with its stable code, and nothing of it is stored."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.specs import TaskSpec
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Event, Session, Task, TaskDependency
from swarm_orchestrator.errors import Invalid
from swarm_orchestrator.graph import sessions
from swarm_orchestrator.graph.sessions import QUEUE_IN_REQUEST
from swarm_orchestrator.planning.plans import PlanLimits
from swarm_orchestrator.settings import OrchestratorSettings
from tests.orchestrator.helpers import assert_counted

SM = async_sessionmaker[AsyncSession]
TASKS = 10_000
WIDTH = 100


def independent(n: int = TASKS) -> list[dict[str, Any]]:
    return [{"key": f"t{i}", "prompt": "true"} for i in range(n)]


def layers(n: int = TASKS) -> list[dict[str, Any]]:
    """`n / WIDTH` layers: each task depends on two of the layer before (as
    `bench/accept_cancel.py` builds them)."""
    return [
        {
            "key": f"L{layer}-{i}",
            "prompt": "true",
            "depends_on": [f"L{layer - 1}-{i}", f"L{layer - 1}-{(i + 1) % WIDTH}"] if layer else [],
        }
        for layer in range(n // WIDTH)
        for i in range(WIDTH)
    ]


async def post_graph(
    api: httpx.AsyncClient, repo: Path, tasks: list[dict[str, Any]]
) -> httpx.Response:
    body = json.dumps({"title": "large", "repo": str(repo), "base_ref": "main", "tasks": tasks})
    return await api.post(
        "/v1/sessions", content=body, headers={"content-type": "application/json"}
    )


async def count(sessionmaker: SM, *columns: Any, where: Any = True) -> int:
    async with sessionmaker() as db:
        return int(await db.scalar(select(func.count(*columns)).where(where)) or 0)


def test_ten_thousand_tasks_are_allowed_by_default() -> None:
    assert OrchestratorSettings.model_fields["max_graph_tasks"].default == TASKS
    assert PlanLimits().max_tasks == TASKS


@pytest.mark.parametrize(
    ("shape", "edges", "ready"),
    [(independent, 0, TASKS), (layers, 2 * (TASKS - WIDTH), WIDTH)],
    ids=["independent", "layers"],
)
async def test_a_graph_of_ten_thousand_tasks_is_stored_whole(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    shape: Any,
    edges: int,
    ready: int,
) -> None:
    graph = shape()
    response = await post_graph(api, git_repo, graph)
    assert response.status_code == 201, response.text[:300]
    body = response.json()
    queued_at_once = min(ready, QUEUE_IN_REQUEST)
    assert body["total"] == TASKS
    assert body["counts"] == {"queued": queued_at_once, "pending": TASKS - queued_at_once}

    assert await count(sessionmaker, Task.id) == TASKS
    assert await count(sessionmaker, TaskDependency.task_id) == edges
    created = await count(sessionmaker, Event.id, where=Event.type == "task.created")
    assert created == TASKS
    async with sessionmaker() as db:
        stored: dict[str, Any] = dict((await db.execute(select(Task.key, Task.spec))).all())
    assert stored.keys() == {t["key"] for t in graph}
    last = graph[-1]
    assert stored[last["key"]]["depends_on"] == last.get("depends_on", [])


async def test_the_sweep_queues_the_ready_tasks_the_request_left(
    api: httpx.AsyncClient, git_repo: Path, state: AppState
) -> None:
    extra = 150
    graph = [*independent(QUEUE_IN_REQUEST + extra), {"key": "last", "prompt": "true"}]
    graph[-1]["depends_on"] = [graph[0]["key"]]  # not ready: stays pending
    response = await post_graph(api, git_repo, graph)
    assert response.status_code == 201, response.text[:300]
    assert response.json()["counts"] == {"queued": QUEUE_IN_REQUEST, "pending": extra + 1}
    assert await state.background.sweep_once() == extra
    counts = (await api.get(f"/v1/sessions/{response.json()['id']}")).json()["counts"]
    assert counts == {"queued": QUEUE_IN_REQUEST + extra, "pending": 1}


async def test_a_request_adding_tasks_queues_its_own_and_leaves_the_rest_to_the_sweep(
    api: httpx.AsyncClient, git_repo: Path, state: AppState
) -> None:
    """It does not search a large session for ready tasks: those the first request left
    wait for the sweep, which is woken only when a request leaves tasks of its own."""
    extra = 50
    response = await post_graph(api, git_repo, independent(QUEUE_IN_REQUEST + extra))
    url = f"/v1/sessions/{response.json()['id']}"
    state.background.sweep_wake.clear()
    added = await api.post(f"{url}/tasks", json=[{"key": "new", "prompt": "true"}])
    assert [t["status"] for t in added.json()] == ["queued"]
    assert not state.background.sweep_wake.is_set()
    counts = (await api.get(url)).json()["counts"]
    assert counts == {"queued": QUEUE_IN_REQUEST + 1, "pending": extra}
    assert await state.background.sweep_once() == extra

    many = [{"key": f"more{i}", "prompt": "true"} for i in range(QUEUE_IN_REQUEST + 1)]
    assert (await api.post(f"{url}/tasks", json=many)).status_code == 201
    assert state.background.sweep_wake.is_set()
    assert await state.background.sweep_once() == 1


async def test_the_session_keeps_its_task_and_edge_counts_as_tasks_are_added(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    """The limits are checked against `Session.task_count` / `edge_count`, not a count of
    the session's rows: they follow every addition, and a refused one changes nothing."""
    response = await post_graph(api, git_repo, layers(3 * WIDTH))  # 300 tasks, 400 edges
    sid = response.json()["id"]
    assert await assert_counted(sessionmaker, sid) == (300, 400)
    more = [
        {"key": "x", "prompt": "true", "depends_on": ["L2-0", "L2-1"]},
        {"key": "y", "prompt": "true", "depends_on": ["x", "L0-5"]},
        {"key": "z", "prompt": "true"},
    ]
    assert (await api.post(f"/v1/sessions/{sid}/tasks", json=more)).status_code == 201
    assert await assert_counted(sessionmaker, sid) == (303, 404)
    refused = await api.post(
        f"/v1/sessions/{sid}/tasks", json=[{"key": "w", "prompt": "true", "depends_on": ["x9"]}]
    )
    assert refused.json()["code"] == "unknown_dependency"
    assert await assert_counted(sessionmaker, sid) == (303, 404)


async def test_adding_tasks_says_so_once_it_committed_before_reading_them_back(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, state: AppState
) -> None:
    """The API wakes the relay from `committed`: right after the commit, not after the
    answer's rows are read; a graph refused commits nothing and says nothing."""
    response = await post_graph(api, git_repo, independent(1))
    session_id = uuid.UUID(response.json()["id"])
    calls: list[bool] = []
    async with sessionmaker() as db:

        def committed() -> None:
            calls.append(db.in_transaction())

        def add(specs: list[TaskSpec]) -> Any:
            return sessions.add_tasks(
                db,
                session_id=session_id,
                specs=specs,
                keys=state.keys,
                max_tasks=100,
                max_session_tasks=100,
                committed=committed,
            )

        added = await add([TaskSpec(key="new", prompt="true")])
        assert [t.status for t in added.tasks] == ["queued"]
        assert calls == [False]  # once, between the commit and the read that follows it
        with pytest.raises(Invalid, match="depend on keys"):
            await add([TaskSpec(key="late", prompt="true", depends_on=["nowhere"])])
        await db.rollback()
    assert calls == [False]
    assert await count(sessionmaker, Task.id, where=Task.key == "late") == 0


def _duplicate(graph: list[dict[str, Any]]) -> None:
    graph[-1]["key"] = graph[0]["key"]


def _unknown(graph: list[dict[str, Any]]) -> None:
    graph[-1]["depends_on"] = ["nowhere"]


def _cycle(graph: list[dict[str, Any]]) -> None:
    graph[0]["depends_on"] = [graph[-1]["key"]]


def _too_large(graph: list[dict[str, Any]]) -> None:
    graph.append({"key": "one-more", "prompt": "true"})


def _too_dense(graph: list[dict[str, Any]]) -> None:
    for i, node in enumerate(graph[1:], start=1):
        node["depends_on"] = [graph[j]["key"] for j in range(max(0, i - 6), i)]


@pytest.mark.parametrize(
    ("defect", "code"),
    [
        (_duplicate, "duplicate_task_key"),
        (_unknown, "unknown_dependency"),
        (_cycle, "dependency_cycle"),
        (_too_large, "graph_too_large"),
        (_too_dense, "graph_too_dense"),
    ],
)
async def test_a_bad_graph_of_that_size_is_refused_with_its_code(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, defect: Any, code: str
) -> None:
    graph = layers()
    defect(graph)
    response = await post_graph(api, git_repo, graph)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["code"] == code
    if code == "graph_too_large":
        assert response.json()["details"]["limit"] == TASKS
    assert await count(sessionmaker, Session.id) == 0
    assert await count(sessionmaker, Task.id) == 0
