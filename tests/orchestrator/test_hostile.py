"""Hostile input: names that would become paths, refs or options; huge bodies and graphs.
Each is refused with a clear 4xx, nothing is stored, and the server stays healthy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.db.models import Session, Task
from swarm_orchestrator.settings import OrchestratorSettings
from tests.e2e.stack import AUTH
from tests.orchestrator.helpers import count_rows, new_session, task

HOSTILE_KEYS = [
    "../../x",
    "../x",
    "/etc/passwd",
    "--upload-pack=touch /tmp/pwned",
    "-x",
    "a/../../b",
    "a..b",
    "x.lock",
    "trailing.",
    "with space",
    "semi;colon",
    "back\\slash",
    "a~1",
    "a^",
    "a:b",
    "a?b",
    "a*b",
    "a[b",
    "@{u}",
    "\u00e9t\u00e9",
    "",
    "k" * 65,
    "nul\x00",
]


async def _healthy(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).status_code == 200
    assert (await api.get("/v1/sessions")).status_code == 200


@pytest.mark.parametrize("key", HOSTILE_KEYS)
async def test_hostile_task_keys_are_refused(
    api: httpx.AsyncClient,
    git_repo: Path,
    key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    session = await new_session(api, git_repo)
    for graph in ([task(key)], [task("ok"), task("b", key)]):
        response = await api.post(f"/v1/sessions/{session['id']}/tasks", json=graph)
        assert response.status_code == 422, (key, response.text)
        assert response.json()["code"] in ("validation_error", "unknown_dependency")
    assert await count_rows(sessionmaker, Task) == 0
    await _healthy(api)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target_branch", "--upload-pack=touch /tmp/pwned"),
        ("target_branch", "../../x"),
        ("target_branch", "main..other"),
        ("target_branch", "x.lock"),
        ("target_branch", "a//b"),
        ("target_branch", "/abs"),
        ("target_branch", "a b"),
        ("target_branch", "@"),
        ("target_branch", "a@{1}"),
        ("target_branch", "ends/"),
        ("target_branch", ".hidden"),
        ("base_ref", "--output=/tmp/x"),
        ("base_ref", "-h"),
        ("repo", "--upload-pack=touch /tmp/pwned"),
        ("repo", "ext::sh -c touch% /tmp/pwned"),
        ("repo", "relative/path"),
        ("repo", "../../etc"),
    ],
)
async def test_hostile_session_fields_are_refused(
    api: httpx.AsyncClient,
    git_repo: Path,
    field: str,
    value: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body: dict[str, Any] = {"title": "t", "repo": str(git_repo), "base_ref": "main"}
    body[field] = value
    response = await api.post("/v1/sessions", json=body)
    assert 400 <= response.status_code < 500, (field, value, response.text)
    assert response.json()["code"] in {"invalid_ref", "invalid_repo", "validation_error"}
    assert await count_rows(sessionmaker, Session) == 0
    await _healthy(api)


async def test_a_50_mb_body_is_refused_and_the_server_stays_up(api: httpx.AsyncClient) -> None:
    body = b'{"title": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    response = await api.post(
        "/v1/sessions", content=body, headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"x" * (1024 * 1024)

    streamed = await api.post(
        "/v1/sessions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    await _healthy(api)


async def test_a_100000_task_graph_is_refused(
    settings: OrchestratorSettings,
    git_repo: Path,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    graph = [{"key": f"t{i}", "prompt": "true"} for i in range(100_000)]
    payload = json.dumps(graph).encode()
    assert len(payload) < settings.max_body_bytes  # the graph check, not the body limit, acts
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=AUTH, timeout=120
        ) as api:
            session = await new_session(api, git_repo)
            response = await api.post(
                f"/v1/sessions/{session['id']}/tasks",
                content=payload,
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 422, response.text[:300]
            assert response.json()["code"] == "graph_too_large"
            assert response.json()["details"]["limit"] == settings.max_graph_tasks
            # As part of a new session too.
            whole = await api.post(
                "/v1/sessions",
                json={"title": "t", "repo": str(git_repo), "tasks": graph},
            )
            assert (whole.status_code, whole.json()["code"]) == (422, "graph_too_large")
            await _healthy(api)
    assert await count_rows(sessionmaker, Task) == 0


async def test_a_prompt_over_the_limit_is_refused(api: httpx.AsyncClient, git_repo: Path) -> None:
    session = await new_session(api, git_repo)
    response = await api.post(
        f"/v1/sessions/{session['id']}/tasks", json=[task("big", prompt="x" * (256 * 1024 + 1))]
    )
    assert response.status_code == 422
    assert "prompt" in json.dumps(response.json()["details"])
