"""Tasks run as personas (`graph.personas.assign`): a task that names a persona gets it, one
with a persona role gets one of that role (best on skills, spread evenly), in every way
tasks are made (a new session's graph, tasks added later, an approved plan). The task keeps
a snapshot of it, which its task message carries; a persona the catalogue lacks is a 422
with nothing stored; a tenant's task finds only its tenant's personas."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Event, Session, Task
from tests.conftest import init_repo
from tests.orchestrator.helpers import (
    count_rows,
    new_session,
    task,
    task_ids,
    task_messages,
    tenant_client,
)

SM = async_sessionmaker[AsyncSession]
ADA = {
    "name": "ada-lovelace",
    "role": "backend",
    "style": "Writes the failing test first.",
    "author_email": "ada@example.com",
}
SNAPSHOT = {
    "name": "ada-lovelace",
    "role": "backend",
    "agents": ["codex", "claude", "gemini"],
    "style": "Writes the failing test first.",
    "author_name": "Ada Lovelace",
    "author_email": "ada@example.com",
}


async def store(client: httpx.AsyncClient, *people: dict[str, Any]) -> None:
    made = await client.post("/v1/personas", json=list(people))
    assert made.status_code == 201, made.text


async def specs(sessionmaker: SM, session_id: str) -> dict[str, dict[str, Any]]:
    async with sessionmaker() as db:
        rows = await db.execute(
            select(Task.key, Task.spec).where(Task.session_id == uuid.UUID(session_id))
        )
        return {row.key: row.spec for row in rows}


async def assigned(sessionmaker: SM, session_id: str) -> dict[str, str | None]:
    return {
        key: (spec.get("assigned_persona") or {}).get("name")
        for key, spec in (await specs(sessionmaker, session_id)).items()
    }


async def created_entries(sessionmaker: SM, session_id: str) -> list[dict[str, Any]]:
    async with sessionmaker() as db:
        rows = await db.scalars(
            select(Event.data).where(
                Event.session_id == uuid.UUID(session_id),
                Event.type == "task.created",
            )
        )
        return list(rows)


async def test_a_named_persona_is_snapshotted_into_the_spec_and_the_task_message(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    await store(api, ADA)
    session = await new_session(api, git_repo, [task("build", persona="ada-lovelace")])
    [stored] = (await specs(state.sessionmaker, session["id"])).values()
    assert stored["persona"] == "ada-lovelace"
    assert stored["assigned_persona"] == SNAPSHOT
    ids = await task_ids(api, session["id"])
    shown = (await api.get(f"/v1/tasks/{ids['build']}")).json()
    assert shown["spec"]["assigned_persona"] == SNAPSHOT
    [message] = await task_messages(state.sessionmaker, ids["build"])
    assert message.persona == {k: v for k, v in SNAPSHOT.items() if k not in ("role", "agents")}
    [entry] = await created_entries(state.sessionmaker, session["id"])
    assert entry["persona"] == "ada-lovelace" and entry["persona_why"] == "named"

    # A later change of the catalogue leaves the task as it was made.
    await store(api, {**ADA, "style": "Changed.", "author_email": "other@example.com"})
    assert (await specs(state.sessionmaker, session["id"]))["build"]["assigned_persona"] == (
        SNAPSHOT
    )

    # The export names the persona (submitted again, it is found again) and says who ran it.
    graph = (await api.get(f"/v1/sessions/{session['id']}/graph")).json()
    [exported] = graph["tasks"]
    assert exported["persona"] == "ada-lovelace"
    assert exported["assigned_persona"] == SNAPSHOT


async def test_a_persona_the_catalogue_lacks_is_422_with_nothing_stored(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    await store(api, ADA)
    body = {
        "title": "t",
        "repo": str(git_repo),
        "base_ref": "main",
        "tasks": [
            task("a", persona="ada-lovelace"),
            task("b", persona="nobody"),
            task("c", persona="no-one-2"),
        ],
    }
    refused = await api.post("/v1/sessions", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "persona_not_found"
    assert refused.json()["details"]["names"] == ["no-one-2", "nobody"]
    assert await count_rows(state.sessionmaker, Session) == 0
    assert await count_rows(state.sessionmaker, Task) == 0

    bad_name = await api.post("/v1/sessions", json={**body, "tasks": [task("a", persona="Ada")]})
    assert bad_name.status_code == 422

    session = await new_session(api, git_repo, [task("a")])
    added = await api.post(
        f"/v1/sessions/{session['id']}/tasks", json=[task("b"), task("c", persona="nobody")]
    )
    assert added.status_code == 422 and added.json()["code"] == "persona_not_found"
    assert await count_rows(state.sessionmaker, Task) == 1


async def test_a_role_spreads_its_tasks_evenly_and_prefers_skill_matches(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    await store(
        api,
        {"name": "bea", "role": "backend"},
        {"name": "cal", "role": "backend", "skills": ["python", "sql", "fastapi"]},
        {"name": "abe", "role": "backend"},
        {"name": "quinn", "role": "qa"},
    )
    backend = [task(f"b{i}", role="backend") for i in range(9)]
    others = [
        task("fast", role="backend", skills=["fastapi", "go"]),
        task("free", role="planner"),  # not a persona role: runs as today
        task("docs", role="docs"),  # no persona of the role: none
    ]
    session = await new_session(api, git_repo, backend + others)
    names = await assigned(state.sessionmaker, session["id"])
    assert Counter(names[f"b{i}"] for i in range(9)) == {"abe": 3, "bea": 3, "cal": 3}
    assert [names[f"b{i}"] for i in range(3)] == ["abe", "bea", "cal"]  # ties: by name
    assert names["fast"] == "cal"  # the only one with fastapi, however busy
    assert names["free"] is None and names["docs"] is None
    why = {e["key"]: e.get("persona_why") for e in await created_entries(
        state.sessionmaker, session["id"])}  # fmt: skip
    assert why["fast"] == "role backend, skills fastapi"
    assert why["b0"] == "role backend" and why["free"] is None
    ids = await task_ids(api, session["id"])
    [message] = await task_messages(state.sessionmaker, ids["free"])
    assert message.persona is None

    # Tasks added later count what the session holds: cal has 4, so abe and bea go first.
    added = await api.post(
        f"/v1/sessions/{session['id']}/tasks",
        json=[task(f"x{i}", role="backend") for i in range(3)],
    )
    assert added.status_code == 201, added.text
    names = await assigned(state.sessionmaker, session["id"])
    assert [names[f"x{i}"] for i in range(3)] == ["abe", "bea", "abe"]


async def test_an_approved_plan_assigns_personas_too(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    await store(api, ADA, {"name": "quinn", "role": "qa"})
    draft = await new_session(
        api, git_repo, goal="- one\n- two", plan=True, settings={"planner": {"agent": "heuristic"}}
    )
    sid = draft["id"]
    tasks = [
        task("one", persona="ada-lovelace"),
        task("two", role="qa"),
        task("three", persona="nobody"),
    ]
    edited = await api.patch(f"/v1/sessions/{sid}/plan", json={"base_revision": 1, "tasks": tasks})
    assert edited.status_code == 200, edited.text
    refused = await api.post(f"/v1/sessions/{sid}/approve")
    assert refused.status_code == 422 and refused.json()["code"] == "persona_not_found"
    assert (await api.get(f"/v1/sessions/{sid}")).json()["status"] == "draft"
    assert await count_rows(state.sessionmaker, Task, Task.kind == "work") == 0

    edited = await api.patch(
        f"/v1/sessions/{sid}/plan", json={"base_revision": 2, "tasks": tasks[:2]}
    )
    assert edited.status_code == 200, edited.text
    approved = await api.post(f"/v1/sessions/{sid}/approve")
    assert approved.status_code == 200, approved.text
    assert await assigned(state.sessionmaker, sid) == {"one": "ada-lovelace", "two": "quinn"}


async def test_a_tenants_task_finds_only_its_tenants_personas(
    api: httpx.AsyncClient, state: AppState, tmp_path: Path
) -> None:
    acme = await tenant_client(api, "acme")
    globex = await tenant_client(api, "globex")
    async with acme, globex:
        await store(acme, {**ADA, "style": "Acme's way."})
        await store(api, {**ADA, "style": "The shared way."})
        refused = await globex.post(
            "/v1/sessions",
            json={
                "title": "t",
                "repo": str(init_repo(tmp_path / "globex")),
                "base_ref": "main",
                "tasks": [task("a", persona="ada-lovelace")],
            },
        )
        assert refused.status_code == 422 and refused.json()["code"] == "persona_not_found"
        # Nor does a role find another tenant's personas.
        plain = await new_session(globex, tmp_path / "globex", [task("b", role="backend")])
        assert await assigned(state.sessionmaker, plain["id"]) == {"b": None}

        mine = await new_session(
            acme, init_repo(tmp_path / "acme"), [task("a", persona="ada-lovelace")]
        )
        shared = await new_session(api, init_repo(tmp_path / "shared"), [task("a", role="backend")])
    acme_spec = (await specs(state.sessionmaker, mine["id"]))["a"]["assigned_persona"]
    shared_spec = (await specs(state.sessionmaker, shared["id"]))["a"]["assigned_persona"]
    assert acme_spec["style"] == "Acme's way."
    assert shared_spec["style"] == "The shared way."
