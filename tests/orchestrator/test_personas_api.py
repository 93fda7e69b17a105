"""`/v1/personas`: generating twice with one seed leaves the same rows; storing a name again
replaces its persona; each tenant (and the shared catalogue of tokens without one) sees and
changes only its own; bad input is a 4xx with nothing stored; removing one."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.personas import ROLE_NAMES, generate
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Persona
from tests.orchestrator.helpers import count_rows, tenant_client

STORED = ("name", "role", "skills", "agents", "style", "author_name", "author_email")


async def stored_rows(
    sessionmaker: async_sessionmaker[AsyncSession], *where: Any
) -> list[dict[str, Any]]:
    """Every persona row (what generation decides, plus tenant, source and seed), by name."""
    columns = [getattr(Persona, c) for c in (*STORED, "tenant", "source", "seed", "created_at")]
    async with sessionmaker() as db:
        rows = await db.execute(select(*columns).where(*where).order_by(Persona.name))
        return [dict(row._mapping) for row in rows]


def persona(name: str, role: str = "backend", **extra: Any) -> dict[str, Any]:
    return {"name": name, "role": role, **extra}


async def test_generating_twice_with_one_seed_leaves_the_same_personas(
    api: httpx.AsyncClient, state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="swarm_orchestrator.graph.personas")
    first = await api.post("/v1/personas/generate", json={"count": 1000, "seed": 20260101})
    assert first.status_code == 201, first.text
    assert first.json() == {"count": 1000, "seed": 20260101, "created": 1000}
    before = await stored_rows(state.sessionmaker)
    logged = [r for r in caplog.records if r.getMessage() == "personas generated"]
    assert [(vars(r)["new"], vars(r)["seed"]) for r in logged] == [(1000, 20260101)]

    again = await api.post("/v1/personas/generate", json={"count": 1000, "seed": 20260101})
    assert again.json() == {"count": 1000, "seed": 20260101, "created": 0}
    after = await stored_rows(state.sessionmaker)
    assert after == before and len(after) == 1000
    expected = sorted(
        (p.model_dump() for p in generate(1000, seed=20260101)), key=lambda p: p["name"]
    )
    assert [{k: r[k] for k in STORED} for r in after] == expected
    assert {(r["tenant"], r["source"], r["seed"]) for r in after} == {(None, "generated", 20260101)}

    listed = (await api.get("/v1/personas", params={"limit": 1000})).json()
    assert [p["name"] for p in listed] == [r["name"] for r in after]
    assert Counter(p["role"] for p in listed) == dict.fromkeys(ROLE_NAMES, 100)
    rust = (await api.get("/v1/personas", params={"role": "rust", "limit": 1000})).json()
    assert len(rust) == 100 and {p["role"] for p in rust} == {"rust"}
    tokio = (await api.get("/v1/personas", params={"skill": "tokio", "limit": 1000})).json()
    assert tokio and all("tokio" in p["skills"] for p in tokio)
    page = (await api.get("/v1/personas", params={"limit": 10, "offset": 995})).json()
    assert [p["name"] for p in page] == [r["name"] for r in after[995:]]

    # Another seed: its namesakes are replaced, the rest added.
    other = (await api.post("/v1/personas/generate", json={"count": 1000, "seed": 7})).json()
    assert 0 < other["created"] < 1000
    assert await count_rows(state.sessionmaker, Persona) == 1000 + other["created"]


async def test_storing_a_name_again_replaces_its_persona(
    api: httpx.AsyncClient, state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="swarm_orchestrator.graph.personas")
    made = await api.post(
        "/v1/personas",
        json=[
            persona("ada-lovelace"),
            persona(
                "grace-hopper",
                "qa",
                skills=["cobol", "testing"],
                agents=["codex", "shell"],
                style="Reproduces every bug in a test first.",
                author_name="Grace Hopper",
                author_email="grace@example.com",
            ),
        ],
    )
    assert made.status_code == 201, made.text
    ada, grace = made.json()
    # Left out: the role's skills and agents, an identity made from the name.
    assert ada["skills"] == ["python", "sql", "http-apis"]
    assert ada["agents"] == ["codex", "claude", "gemini"]
    assert (ada["author_name"], ada["author_email"]) == (
        "Ada Lovelace",
        "ada-lovelace@personas.swarm.invalid",
    )
    assert (ada["source"], ada["seed"], ada["tenant"], ada["style"]) == ("manual", None, None, "")
    assert grace["agents"] == ["codex", "shell"] and grace["author_email"] == "grace@example.com"
    first = {r["name"]: r for r in await stored_rows(state.sessionmaker)}

    replaced = await api.post(
        "/v1/personas", json=[persona("ada-lovelace", "rust", style="Counts every byte.")]
    )
    assert replaced.status_code == 201, replaced.text
    body = replaced.json()[0]
    assert (body["role"], body["skills"], body["style"]) == (
        "rust",
        ["rust", "cargo", "testing"],
        "Counts every byte.",
    )
    assert body["updated_at"] >= ada["updated_at"]
    now = {r["name"]: r for r in await stored_rows(state.sessionmaker)}
    assert now["ada-lovelace"]["created_at"] == first["ada-lovelace"]["created_at"]
    assert now["grace-hopper"] == first["grace-hopper"]
    assert await count_rows(state.sessionmaker, Persona) == 2

    # A generated namesake is replaced by a stored one, and the other way round.
    generated = generate(1, seed=3)[0]
    await api.post("/v1/personas/generate", json={"count": 1, "seed": 3})
    mine = await api.post("/v1/personas", json=[persona(generated.name, "docs")])
    assert (mine.json()[0]["source"], mine.json()[0]["seed"]) == ("manual", None)
    assert (await api.get(f"/v1/personas/{generated.name}")).json()["role"] == "docs"

    one = await api.get("/v1/personas/grace-hopper")
    assert one.status_code == 200 and one.json()["skills"] == ["cobol", "testing"]


async def test_each_tenant_has_its_own_catalogue(api: httpx.AsyncClient, state: AppState) -> None:
    acme = await tenant_client(api, "acme")
    globex = await tenant_client(api, "globex")
    viewer = await tenant_client(api, "globex", role="viewer")
    async with acme, globex, viewer:
        assert (await acme.post("/v1/personas", json=[persona("ada", "pm")])).status_code == 201
        assert (await globex.post("/v1/personas", json=[persona("ada", "qa")])).status_code == 201
        assert (await api.post("/v1/personas", json=[persona("ada", "docs")])).status_code == 201
        generated = await acme.post("/v1/personas/generate", json={"count": 50, "seed": 1})
        assert generated.json()["created"] == 50

        assert (await acme.get("/v1/personas/ada")).json()["role"] == "pm"
        assert (await globex.get("/v1/personas/ada")).json()["role"] == "qa"
        assert (await viewer.get("/v1/personas/ada")).json()["tenant"] == "globex"
        assert (await api.get("/v1/personas/ada")).json()["tenant"] is None
        assert len((await acme.get("/v1/personas")).json()) == 51
        assert [p["name"] for p in (await globex.get("/v1/personas")).json()] == ["ada"]
        assert [p["name"] for p in (await api.get("/v1/personas")).json()] == ["ada"]
        name = generate(1, seed=1)[0].name  # acme's
        missing = await globex.get(f"/v1/personas/{name}")
        assert (missing.status_code, missing.json()["code"]) == (404, "persona_not_found")
        gone = await globex.delete(f"/v1/personas/{name}")
        assert (gone.status_code, gone.json()["code"]) == (404, "persona_not_found")

        refused = await viewer.post("/v1/personas", json=[persona("bob")])
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
        refused = await viewer.delete("/v1/personas/ada")
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")

        assert (await globex.delete("/v1/personas/ada")).status_code == 200
        assert (await acme.get("/v1/personas/ada")).status_code == 200
    assert await count_rows(state.sessionmaker, Persona, Persona.tenant == "acme") == 51
    assert await count_rows(state.sessionmaker, Persona, Persona.tenant.is_(None)) == 1
    assert await count_rows(state.sessionmaker, Persona) == 52


async def test_bad_input_is_refused_and_nothing_is_stored(
    api: httpx.AsyncClient, state: AppState
) -> None:
    key = "sk-ant-" + "a1b2c3d4" * 4
    bad_personas: list[Any] = [
        {"role": "backend"},
        persona("Ada"),
        persona("ada--lovelace"),
        persona("-ada"),
        persona("ada lovelace"),
        persona("x" * 65),
        persona("ada", "wizard"),
        persona("ada", style=f"use {key} to log in"),
        persona("ada", style="x" * 2001),
        persona("ada", style="nul \x00 here"),
        persona("ada", agents=[]),
        persona("ada", agents=["robot"]),
        persona("ada", agents=["codex", "codex"]),
        persona("ada", skills=["python", "python"]),
        persona("ada", skills=["Not A Skill"]),
        persona("ada", author_email="not-an-address"),
        persona("ada", author_email=f"{key}@example.com"),
        persona("ada", author_name="Ada <ada@example.com>"),
        persona("ada", author_name="two\nlines"),
        persona("ada", extra=1),
        "ada",
    ]
    for bad in bad_personas:
        response = await api.post("/v1/personas", json=[persona("good"), bad])
        assert (response.status_code, response.json()["code"]) == (422, "validation_error"), bad
        assert key not in response.text
    cases: list[tuple[str, Any, int, str]] = [
        ("/v1/personas", [], 422, "validation_error"),
        ("/v1/personas", [persona(f"p{i}") for i in range(1001)], 422, "validation_error"),
        ("/v1/personas", persona("ada"), 422, "validation_error"),
        ("/v1/personas", [persona("ada"), persona("ada", "qa")], 422, "duplicate_persona"),
        ("/v1/personas/generate", {"count": 0, "seed": 1}, 422, "validation_error"),
        ("/v1/personas/generate", {"count": 10_001, "seed": 1}, 422, "validation_error"),
        ("/v1/personas/generate", {"count": 5, "seed": -1}, 422, "validation_error"),
        ("/v1/personas/generate", {"count": 5, "seed": 2**63}, 422, "validation_error"),
        ("/v1/personas/generate", {"count": 5, "seed": "s"}, 422, "validation_error"),
        ("/v1/personas/generate", {"count": 5}, 422, "validation_error"),
        ("/v1/personas/generate", {"count": 5, "seed": 1, "x": 1}, 422, "validation_error"),
    ]
    for path, body, status, code in cases:
        response = await api.post(path, json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), body
    surrogate = await api.post(
        "/v1/personas",
        content=b'[{"name": "ada", "role": "qa", "style": "x\\ud800"}]',
        headers={"content-type": "application/json"},
    )
    assert (surrogate.status_code, surrogate.json()["code"]) == (422, "validation_error")
    assert await count_rows(state.sessionmaker, Persona) == 0

    queries: list[tuple[dict[str, Any], str]] = [
        ({"role": "wizard"}, "validation_error"),
        ({"skill": "Not A Skill"}, "invalid_skill"),
        ({"skill": "x" * 41}, "validation_error"),
        ({"limit": 0}, "validation_error"),
        ({"limit": 1001}, "validation_error"),
        ({"offset": -1}, "validation_error"),
    ]
    for params, code in queries:
        response = await api.get("/v1/personas", params=params)
        assert (response.status_code, response.json()["code"]) == (422, code), params
    for name in ("NoSuch", "a%00b", "x" * 300, "no-such"):
        for method in ("GET", "DELETE"):
            response = await api.request(method, f"/v1/personas/{name}")
            assert (response.status_code, response.json()["code"]) == (404, "persona_not_found")


async def test_removing_a_persona(
    api: httpx.AsyncClient, state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="swarm_orchestrator.graph.personas")
    await api.post("/v1/personas", json=[persona("ada"), persona("bob", "qa")])
    removed = await api.delete("/v1/personas/ada")
    assert removed.status_code == 200 and removed.json()["name"] == "ada"
    assert (await api.get("/v1/personas/ada")).json()["code"] == "persona_not_found"
    again = await api.delete("/v1/personas/ada")
    assert (again.status_code, again.json()["code"]) == (404, "persona_not_found")
    assert [p["name"] for p in (await api.get("/v1/personas")).json()] == ["bob"]
    assert await count_rows(state.sessionmaker, Persona) == 1
