"""Limits enforced before a body is parsed (`api/limits.py`): JSON nested too deep is a 422
`too_deep`, a graph with too many dependency edges a 422 `graph_too_dense`; either way
nothing is stored and the server stays healthy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.db.models import Session, Task, TaskDependency
from swarm_orchestrator.settings import OrchestratorSettings
from tests.e2e.stack import AUTH
from tests.orchestrator.helpers import count_rows, new_session, task

JSON = {"content-type": "application/json"}


def nested_schema(depth: int) -> dict[str, Any]:
    """An `output_schema` `depth` levels deep (built by a loop: no recursion anywhere)."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth - 1):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def deep_body(depth: int) -> bytes:
    """A one-task graph whose body nests `depth` levels (its spec's `output_schema` the
    deepest part), written out as bytes, since no JSON encoder goes that deep."""
    inner = b'{"a":' * (depth - 2) + b"1" + b"}" * (depth - 2)
    return b'[{"key":"deep","prompt":"true","output_schema":' + inner + b"}]"


def chain(n: int, fan_in: int, prefix: str = "t") -> list[dict[str, Any]]:
    """`n` tasks, each depending on (up to) the `fan_in` before it."""
    return [
        task(f"{prefix}{i}", *(f"{prefix}{j}" for j in range(max(0, i - fan_in), i)))
        for i in range(n)
    ]


@asynccontextmanager
async def client(settings: OrchestratorSettings, **limits: int) -> AsyncIterator[httpx.AsyncClient]:
    """The app with some limits changed."""
    app = create_app(settings.model_copy(update=limits))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://swarm.test", headers=AUTH, timeout=60
        ) as api:
            yield api


async def _healthy(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).status_code == 200
    assert (await api.get("/v1/whoami")).status_code == 200


# -- nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 255, 260, 100_000])
async def test_a_body_nested_too_deep_is_refused_before_it_is_stored(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: async_sessionmaker[AsyncSession],
    depth: int,
) -> None:
    session = await new_session(api, git_repo)
    response = await api.post(
        f"/v1/sessions/{session['id']}/tasks", content=deep_body(depth), headers=JSON
    )
    assert (response.status_code, response.json()["code"]) == (422, "too_deep"), response.text
    assert response.json()["details"] == {"limit": 64}
    assert await count_rows(sessionmaker, Task) == 0
    await _healthy(api)


async def test_a_schema_within_the_depth_limit_is_stored_and_read_back(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    schema = nested_schema(30)  # 59 levels of objects: the body is 61 deep
    session = await new_session(api, git_repo, tasks=[task("a", output_schema=schema)])
    listed = (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()
    detail = await api.get(f"/v1/tasks/{listed[0]['id']}")
    assert detail.status_code == 200
    assert detail.json()["spec"]["output_schema"] == schema


async def test_a_deep_body_streamed_in_small_chunks_is_refused(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    session = await new_session(api, git_repo)
    body = deep_body(10_000)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):  # cuts inside keys, strings and escapes alike
            yield body[start : start + 7]

    response = await api.post(f"/v1/sessions/{session['id']}/tasks", content=chunks(), headers=JSON)
    assert (response.status_code, response.json()["code"]) == (422, "too_deep")
    assert await count_rows(sessionmaker, Task) == 0


async def test_every_route_refuses_deep_bodies(
    api: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    deep = b'{"title": "t", "repo": "/x", "settings": ' + b'{"a": ' * 500 + b"1" + b"}" * 501
    for path in ("/v1/sessions", "/v1/tokens"):
        response = await api.post(path, content=deep, headers=JSON)
        assert (response.status_code, response.json()["code"]) == (422, "too_deep"), path
    assert await count_rows(sessionmaker, Session) == 0


async def test_brackets_inside_strings_do_not_count(api: httpx.AsyncClient, git_repo: Path) -> None:
    prompt = "echo '" + "[{" * 500 + '\\"' + "}]" * 500 + "'"
    session = await new_session(api, git_repo, tasks=[task("a", prompt=prompt)])
    assert session["total"] == 1


async def test_the_depth_limit_is_a_setting(settings: OrchestratorSettings, git_repo: Path) -> None:
    async with client(settings, max_json_depth=4) as api:
        refused = await api.post(
            "/v1/sessions",
            json={
                "title": "t",
                "repo": str(git_repo),
                "tasks": [task("a", output_schema={"a": {}})],
            },
        )
        assert (refused.status_code, refused.json()["details"]) == (422, {"limit": 4})
        await new_session(api, git_repo, tasks=[task("a")])  # 4 levels deep: `depends_on`


async def test_a_session_refuses_the_graph_that_would_pass_its_task_limit(
    settings: OrchestratorSettings, git_repo: Path, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with client(settings, max_session_tasks=10) as api:
        session = await new_session(api, git_repo, tasks=[task(f"t{i}") for i in range(6)])
        url = f"/v1/sessions/{session['id']}/tasks"
        response = await api.post(url, json=[task(f"u{i}", "t0") for i in range(5)])
        assert (response.status_code, response.json()["code"]) == (422, "graph_too_large")
        assert response.json()["details"] == {"limit": 10, "existing": 6}
        assert await count_rows(sessionmaker, Task) == 6
        fits = await api.post(url, json=[task(f"u{i}", "t0") for i in range(4)])
        assert fits.status_code == 201
    assert await count_rows(sessionmaker, Task) == 10


# -- dependency edges ----------------------------------------------------------------------


async def test_a_dense_graph_is_refused_from_its_bytes(
    settings: OrchestratorSettings, git_repo: Path, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Refused before the JSON is parsed or a key validated: the same answer for a body that
    is cut short (invalid JSON) or holds an invalid key."""
    graph = chain(8, 7)  # 28 edges
    body = json.dumps(graph).encode()
    bad_key = json.dumps([*graph, task("x", "not a key!")]).encode()
    async with client(settings, max_graph_edges=20) as api:
        session = await new_session(api, git_repo)
        url = f"/v1/sessions/{session['id']}/tasks"
        escaped = body.replace(b'"depends_on"', b'"depends\\u005fon"')  # the same key
        for content, edges in ((body, 28), (body[:-1], 28), (bad_key, 29), (escaped, 28)):
            response = await api.post(url, content=content, headers=JSON)
            assert response.status_code == 422, response.text
            assert response.json()["code"] == "graph_too_dense"
            assert response.json()["details"] == {"limit": 20, "got": edges}
        await _healthy(api)
    assert await count_rows(sessionmaker, Task) == 0


async def test_a_graph_at_the_edge_limit_is_accepted(
    settings: OrchestratorSettings, git_repo: Path
) -> None:
    async with client(settings, max_graph_edges=28) as api:
        session = await new_session(api, git_repo, tasks=chain(8, 7))
        assert session["total"] == 8
        tasks = (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()
        assert sum(len(t["depends_on"]) for t in tasks) == 28


async def test_a_new_session_with_a_dense_graph_is_refused(
    settings: OrchestratorSettings, git_repo: Path, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with client(settings, max_graph_edges=20) as api:
        response = await api.post(
            "/v1/sessions", json={"title": "t", "repo": str(git_repo), "tasks": chain(8, 7)}
        )
        assert (response.status_code, response.json()["code"]) == (422, "graph_too_dense")
    assert await count_rows(sessionmaker, Session) == 0


async def test_a_session_refuses_the_graph_that_would_pass_its_edge_limit(
    settings: OrchestratorSettings, git_repo: Path, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with client(settings, max_session_edges=40) as api:
        session = await new_session(api, git_repo, tasks=chain(8, 7))  # 28 edges
        url = f"/v1/sessions/{session['id']}/tasks"
        more = [
            task("u1", "t0", "t1", "t2"),
            task("u2", "u1", "t0"),
            task("u3", "u1", "u2", "t7"),
            task("u4", "u1", "u2", "u3", "t3", "t4", "t5", "t6"),
        ]  # 3 + 2 + 3 + 7 = 15 edges
        response = await api.post(url, json=more)
        assert (response.status_code, response.json()["code"]) == (422, "graph_too_dense")
        assert response.json()["details"] == {"limit": 40, "existing": 28, "got": 15}
        assert await count_rows(sessionmaker, TaskDependency) == 28
        assert (await api.post(url, json=more[:3])).status_code == 201  # 8 more: 36
    assert await count_rows(sessionmaker, TaskDependency) == 36
