"""The REST API: sessions and task graphs are validated and stored in one transaction, and
every refusal is a 4xx JSON error with a stable code."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git
from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Attempt, Event, Outbox, Session, Task, TaskDependency
from swarm_orchestrator.settings import OrchestratorSettings
from tests.e2e.stack import AUTH
from tests.orchestrator.helpers import count_rows, new_session, task, task_ids, task_states

SM = async_sessionmaker[AsyncSession]


async def test_create_session_mirrors_the_repository(
    api: httpx.AsyncClient, git_repo: Path, workspace: Path
) -> None:
    session = await new_session(api, git_repo)
    assert session["status"] == "draft"
    assert session["base_commit"] == git.resolve_commit(git_repo / ".git", "main")
    assert (workspace / "repos" / f"{session['id']}.git" / "HEAD").exists()
    again = await api.get(f"/v1/sessions/{session['id']}")
    assert again.status_code == 200 and again.json()["id"] == session["id"]


async def test_idempotency_key_returns_the_first_session(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    body = {"title": "t", "repo": str(git_repo), "idempotency_key": "run-42"}
    first = await api.post("/v1/sessions", json=body)
    second = await api.post("/v1/sessions", json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert await count_rows(sessionmaker, Session) == 1


async def test_a_graph_is_stored_and_its_roots_queued(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    session = await new_session(api, git_repo, [task("a"), task("b", "a"), task("c", "a", "b")])
    assert session["status"] == "active"
    assert session["counts"] == {"queued": 1, "pending": 2}
    tasks = (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()
    by_key = {t["key"]: t for t in tasks}
    assert by_key["c"]["depends_on"] == ["a", "b"]
    assert by_key["a"]["status"] == "queued" and by_key["a"]["attempt"] == 1
    assert by_key["a"]["branch"] == f"swarm/{session['id']}/task/a"
    assert await count_rows(sessionmaker, Outbox) == 1
    assert await count_rows(sessionmaker, Attempt) == 1
    assert await count_rows(sessionmaker, TaskDependency) == 3


@pytest.mark.parametrize(
    ("graph", "code"),
    [
        ([task("a", "c"), task("b", "a"), task("c", "b")], "dependency_cycle"),
        ([task("a"), task("b", "ghost")], "unknown_dependency"),
        ([task("a"), task("a")], "duplicate_task_key"),
    ],
)
async def test_a_bad_graph_is_refused_and_nothing_is_stored(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    workspace: Path,
    graph: list[dict[str, object]],
    code: str,
) -> None:
    response = await api.post(
        "/v1/sessions", json={"title": "t", "repo": str(git_repo), "tasks": graph}
    )
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert await count_rows(sessionmaker, Session) == 0
    assert not any((workspace / "repos").glob("*")) if (workspace / "repos").exists() else True

    session = await new_session(api, git_repo)
    response = await api.post(f"/v1/sessions/{session['id']}/tasks", json=graph)
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert await count_rows(sessionmaker, Task) == 0
    assert await count_rows(sessionmaker, Outbox) == 0
    assert await count_rows(sessionmaker, Event, Event.type != "session.created") == 0


async def test_added_tasks_may_depend_on_existing_ones(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    added = await api.post(f"/v1/sessions/{session['id']}/tasks", json=[task("b", "a")])
    assert added.status_code == 201
    assert [(t["key"], t["status"], t["depends_on"]) for t in added.json()] == [
        ("b", "pending", ["a"])
    ]
    clash = await api.post(f"/v1/sessions/{session['id']}/tasks", json=[task("a")])
    assert (clash.status_code, clash.json()["code"]) == (409, "task_key_exists")
    unknown = await api.post(f"/v1/sessions/{session['id']}/tasks", json=[task("c", "a", "z")])
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_dependency")
    assert unknown.json()["details"] == {"unknown": {"c": ["z"]}}
    assert await count_rows(sessionmaker, Task) == 2


async def test_added_tasks_under_one_that_did_not_succeed_are_blocked_at_once(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    session = await new_session(api, git_repo, [task("a"), task("b", "a"), task("keep")])
    url = f"/v1/sessions/{session['id']}/tasks"
    ids = await task_ids(api, session["id"])
    assert (await api.post(f"/v1/tasks/{ids['a']}/cancel")).status_code == 200
    more = [task("c", "a"), task("d", "b"), task("e", "d"), task("f", "keep"), task("g")]
    assert (await api.post(url, json=more)).status_code == 201
    states = {k: status for k, (status, _) in (await task_states(api, session["id"])).items()}
    assert states == {
        "a": "cancelled",
        "b": "blocked",
        "keep": "queued",
        "c": "blocked",  # under the cancelled task
        "d": "blocked",  # under the task it blocked
        "e": "blocked",  # under a new blocked one
        "f": "pending",
        "g": "queued",
    }


@pytest.mark.parametrize(
    ("body", "code", "status"),
    [
        ({"repo": "relative/path"}, "invalid_repo", 422),
        ({"repo": "--upload-pack=touch /tmp/x"}, "invalid_repo", 422),
        ({"repo": "/nonexistent/repo"}, "repo_not_found", 422),
        ({"base_ref": "no-such-branch"}, "unknown_ref", 422),
        ({"base_ref": "--orphan"}, "invalid_ref", 422),
        ({"base_ref": "a..b"}, "invalid_ref", 422),
        ({"title": ""}, "validation_error", 422),
        ({"colour": "red"}, "validation_error", 422),
        ({"tasks": [{"key": "../../x", "prompt": "p"}]}, "validation_error", 422),
        ({"tasks": [{"key": "--upload-pack=x", "prompt": "p"}]}, "validation_error", 422),
        ({"tasks": [{"key": "a"}]}, "validation_error", 422),
        ({"title": "nul\u0000byte"}, "validation_error", 422),
        ({"settings": {"deep": ["nul\u0000"]}}, "validation_error", 422),
        ({"tasks": [{"key": "a", "prompt": "echo \u0000"}]}, "validation_error", 422),
        ({"repo": "/" + "x" * 300 + "/repo"}, "invalid_repo", 422),
    ],
)
async def test_bad_session_input_is_a_4xx_with_a_code(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    body: dict[str, object],
    code: str,
    status: int,
) -> None:
    response = await api.post("/v1/sessions", json={"title": "t", "repo": str(git_repo), **body})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == code and error["message"]
    assert await count_rows(sessionmaker, Session) == 0


async def test_a_directory_that_is_not_a_repository(api: httpx.AsyncClient, tmp_path: Path) -> None:
    response = await api.post("/v1/sessions", json={"title": "t", "repo": str(tmp_path)})
    assert (response.status_code, response.json()["code"]) == (422, "invalid_repo")
    assert "is not a git repository" in response.json()["message"]


async def test_malformed_json_and_unknown_ids(api: httpx.AsyncClient) -> None:
    bad = await api.post(
        "/v1/sessions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_json")
    missing = await api.get(f"/v1/sessions/{uuid.uuid4()}")
    assert (missing.status_code, missing.json()["code"]) == (404, "session_not_found")
    missing_task = await api.post(f"/v1/tasks/{uuid.uuid4()}/retry")
    assert (missing_task.status_code, missing_task.json()["code"]) == (404, "task_not_found")
    not_uuid = await api.get("/v1/sessions/not-a-uuid")
    assert (not_uuid.status_code, not_uuid.json()["code"]) == (422, "validation_error")
    no_route = await api.get("/v1/nothing-here")
    assert (no_route.status_code, no_route.json()["code"]) == (404, "not_found")
    bad_filter = await api.get(f"/v1/sessions/{uuid.uuid4()}/tasks", params={"status": "x"})
    assert bad_filter.status_code == 422


async def test_graph_size_limits(api: httpx.AsyncClient, git_repo: Path, state: AppState) -> None:
    session = await new_session(api, git_repo)
    limit = state.settings.max_graph_tasks
    response = await api.post(
        f"/v1/sessions/{session['id']}/tasks", json=[task(f"t{i}") for i in range(limit + 1)]
    )
    assert (response.status_code, response.json()["code"]) == (422, "graph_too_large")
    empty = await api.post(f"/v1/sessions/{session['id']}/tasks", json=[])
    assert (empty.status_code, empty.json()["code"]) == (422, "empty_graph")


async def test_a_large_graph_is_stored_in_one_request(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    graph = [task(f"t{i}", *([f"t{i - 1}"] if i % 10 else [])) for i in range(2000)]
    session = await new_session(api, git_repo, graph)
    assert session["total"] == 2000
    assert session["counts"] == {"queued": 200, "pending": 1800}
    assert await count_rows(sessionmaker, TaskDependency) == 1800


async def test_oversized_bodies_are_refused_before_parsing(
    settings: OrchestratorSettings, git_repo: Path
) -> None:
    app = create_app(settings.model_copy(update={"max_body_bytes": 2048}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=AUTH
        ) as client:
            big = {"title": "t", "repo": str(git_repo), "goal": "x" * 4096}
            response = await client.post("/v1/sessions", json=big)
            assert (response.status_code, response.json()["code"]) == (413, "body_too_large")

            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(4):
                    yield b"x" * 1024

            streamed = await client.post(
                "/v1/sessions", content=chunks(), headers={"content-type": "application/json"}
            )
            assert streamed.status_code == 413
            assert (await client.get("/healthz")).status_code == 200


async def test_a_configured_token_is_required(settings: OrchestratorSettings) -> None:
    app = create_app(settings.model_copy(update={"api_token": SecretStr("s3cret-token")}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200
            none = await client.get("/v1/sessions")
            assert (none.status_code, none.json()["code"]) == (401, "unauthorized")
            assert none.headers["www-authenticate"] == "Bearer"
            wrong = await client.get("/v1/sessions", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = await client.get(
                "/v1/sessions", headers={"Authorization": "Bearer s3cret-token"}
            )
            assert right.status_code == 200


async def test_probes(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_reports_an_unreachable_database(settings: OrchestratorSettings) -> None:
    broken = settings.model_copy(
        update={"database_url": SecretStr("postgresql+asyncpg://postgres@127.0.0.1:1/none")}
    )
    app = create_app(broken)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=AUTH
        ) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["details"]["database"].startswith("error")
            listing = await client.get("/v1/sessions")
            assert (listing.status_code, listing.json()["code"]) == (503, "unavailable")


async def test_query_numbers_beyond_bigint_are_refused(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    for path, name in [
        (f"/v1/sessions/{session['id']}/tasks", "offset"),
        (f"/v1/sessions/{session['id']}/events", "after"),
        ("/v1/sessions", "offset"),
    ]:
        response = await api.get(path, params={name: 10**20})
        assert (response.status_code, response.json()["code"]) == (422, "validation_error")


async def test_repository_credentials_are_never_stored_or_echoed(
    api: httpx.AsyncClient, sessionmaker: SM
) -> None:
    response = await api.post(
        "/v1/sessions",
        json={"title": "t", "repo": "https://someone:s3cret-token@127.0.0.1:1/x.git"},
    )
    assert (response.status_code, response.json()["code"]) == (422, "repo_unavailable")
    assert "s3cret-token" not in response.text
    assert "https://127.0.0.1:1/x.git" in response.json()["message"]


async def test_a_mirror_keeps_no_credentials(
    api: httpx.AsyncClient,
    git_repo: Path,
    workspace: Path,
    sessionmaker: SM,
    settings: OrchestratorSettings,
) -> None:
    settings.repo_schemes = ["https", "ssh", "file"]
    url = f"file://someone:s3cret-token@localhost{git_repo}"
    response = await api.post("/v1/sessions", json={"title": "t", "repo": url})
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["repo"] == f"file://localhost{git_repo}"
    mirror = workspace / "repos" / f"{session['id']}.git"
    assert "s3cret-token" not in (mirror / "config").read_text()
    async with sessionmaker() as db:
        events = (await db.scalars(select(Event.data))).all()
    assert "s3cret-token" not in str(events)
