"""Prices and usage: each attempt is priced once when its result arrives (by the kind it ran
on and the model its CLI named, `SWARM_PRICES` on top; shell and no usage cost nothing; the
CLI's own claim kept beside it), and `GET /v1/usage` sums the attempts per session, task,
agent, persona, tenant and day, as a tenant may see them; `GET /v1/prices` shows the table."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import TaskFailed, TaskStarted, TaskSucceeded
from swarm_common.prices import PRICES_AS_OF, PriceTable, parse_prices
from swarm_common.streams import Keys
from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Attempt, Session, Task
from swarm_orchestrator.graph import pricing
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.settings import OrchestratorSettings
from tests.orchestrator.helpers import (
    apply,
    new_session,
    outcome_event,
    succeed_attempt,
    task,
    task_ids,
    tenant_client,
)

SM = async_sessionmaker[AsyncSession]
TABLE = PriceTable()
USAGE = {"input": 12_000, "cached_input": 2_000, "output": 3_000}
DAY_ONE = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
DAY_TWO = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)


async def _attempts(api: httpx.AsyncClient, task_id: uuid.UUID) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await api.get(f"/v1/tasks/{task_id}")).json()["attempts"]
    return found


def _usd(value: Any) -> Decimal:
    return Decimal(str(value))


async def test_an_attempt_is_priced_by_the_model_its_cli_named_and_its_claim_kept(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    tasks = [
        task("named", agent="claude"),
        task("unnamed", agent="codex"),
        task("asked", agent="gemini", model="gemini-2.5-flash"),
        task("free", agent="shell"),
        task("quiet", agent="claude"),
    ]
    session = await new_session(api, git_repo, tasks)
    sid, ids = session["id"], await task_ids(api, session["id"])
    model = "claude-haiku-4-5-20251001"
    reports: dict[str, dict[str, Any]] = {
        "named": {"usage": USAGE, "model": model, "cost_usd": 0.5},
        "unnamed": {"usage": USAGE},  # an adapter that predates `model`
        "asked": {"usage": USAGE},  # priced by the model the task asked for
        "free": {"usage": USAGE, "cost_usd": 0.25},
        "quiet": {"model": model},  # no usage reported
    }
    for key, fields in reports.items():
        await succeed_attempt(sessionmaker, keys, sid, ids[key], **fields)

    expected = {
        "named": (TABLE.cost("claude", model, USAGE).usd, "claude-haiku-4-5"),
        "unnamed": (TABLE.cost("codex", None, USAGE).usd, "gpt-5-codex"),
        "asked": (TABLE.cost("gemini", "gemini-2.5-flash", USAGE).usd, "gemini-2.5-flash"),
        "free": (Decimal(0), None),
        "quiet": (Decimal(0), "claude-haiku-4-5"),
    }
    # (12000 - 2000) x $1 + 2000 x $0.10 + 3000 x $5, per million tokens
    assert expected["named"][0] == Decimal("0.0252")
    for key, (usd, priced_as) in expected.items():
        [attempt] = await _attempts(api, ids[key])
        assert (attempt["agent"], _usd(attempt["cost_usd"])) == (tasks_agent(tasks, key), usd), key
        assert attempt["model"] == reports[key].get("model")
        claim = reports[key].get("cost_usd")
        assert attempt["reported_cost_usd"] == (None if claim is None else f"{claim:.6f}")
        events = (await api.get(f"/v1/tasks/{ids[key]}/events")).json()
        data = next(e["data"] for e in events if e["type"] == "task.succeeded")
        assert (_usd(data["cost_usd"]), data["priced_as"]) == (usd, priced_as), key
    progress = (await api.get(f"/v1/sessions/{sid}/progress")).json()
    assert _usd(progress["cost_usd"]) == sum(usd for usd, _ in expected.values())


def tasks_agent(tasks: list[dict[str, Any]], key: str) -> str:
    return str(next(t["agent"] for t in tasks if t["key"] == key))


async def test_a_cost_is_set_once_however_often_the_result_arrives(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a", agent="claude")])
    sid, ids = session["id"], await task_ids(api, session["id"])
    started = outcome_event(TaskStarted, sid, ids["a"], branch="x", base_commit="y")
    assert await apply(sessionmaker, keys, started) == Outcome.APPLIED
    done = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, usage=USAGE, cost_usd=0.5)
    assert await apply(sessionmaker, keys, done, envelope_id="result-1") == Outcome.APPLIED
    [first] = await _attempts(api, ids["a"])
    assert _usd(first["cost_usd"]) == TABLE.cost("claude", None, USAGE).usd > 0
    # The same envelope again, and the same result sent again under a new envelope id.
    assert await apply(sessionmaker, keys, done, envelope_id="result-1") == Outcome.DUPLICATE
    more = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, usage={"output": 10**6})
    assert await apply(sessionmaker, keys, more, envelope_id="result-2") == Outcome.IGNORED
    assert await _attempts(api, ids["a"]) == [first]

    # Asked to price an attempt that has its cost, `pricing` keeps the first figures.
    async with sessionmaker() as db, db.begin():
        attempt = await db.scalar(select(Attempt).where(Attempt.task_id == ids["a"]))
        assert attempt is not None
        said = pricing.price_attempt(
            db, attempt, usage={"output": 10**6}, model="claude-opus-4", reported_usd=9.0
        )
        assert (attempt.cost_usd, _usd(said["cost_usd"])) == (_usd(first["cost_usd"]),) * 2
        assert attempt.reported_cost_usd == Decimal("0.5") and attempt.model is None


async def test_an_attempt_keeps_the_kind_it_ran_on_when_its_task_changes_kind(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a", agent="claude")])
    sid, ids = session["id"], await task_ids(api, session["id"])
    async with sessionmaker() as db, db.begin():  # as a failover to another kind would
        await db.execute(update(Task).where(Task.id == ids["a"]).values(agent="codex"))
    await succeed_attempt(sessionmaker, keys, sid, ids["a"], usage=USAGE)
    [attempt] = await _attempts(api, ids["a"])
    assert attempt["agent"] == "claude"
    assert _usd(attempt["cost_usd"]) == TABLE.cost("claude", None, USAGE).usd
    by_agent = (await api.get("/v1/usage", params={"group_by": "agent"})).json()
    assert [r["key"] for r in by_agent["rows"]] == ["claude"]


PricedApp = tuple[httpx.AsyncClient, AppState]


@pytest.fixture
async def priced_app(settings: OrchestratorSettings) -> AsyncIterator[PricedApp]:
    """The app with `SWARM_PRICES` set: claude-sonnet-4-5 at $2 / $0.20 / $10 and a model
    of its own."""
    prices = {
        "claude-sonnet-4-5": {"input": 2, "cached_input": 0.2, "output": 10},
        "house-model": {"input": 0.5, "output": 1},
    }
    app = create_app(settings.model_copy(update={"prices": json.dumps(prices)}))
    async with app.router.lifespan_context(app):
        state: AppState = app.state.swarm
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://swarm.test",
            headers={"Authorization": f"Bearer {settings.bootstrap_token()}"},
        ) as client:
            yield client, state


async def test_the_operators_prices_price_what_the_app_applies_and_are_shown(
    priced_app: PricedApp, git_repo: Path, keys: Keys
) -> None:
    api, state = priced_app
    session = await new_session(api, git_repo, [task("a", agent="claude")])
    sid, ids = session["id"], await task_ids(api, session["id"])
    await succeed_attempt(state.sessionmaker, keys, sid, ids["a"], usage=USAGE)
    [attempt] = await _attempts(api, ids["a"])
    # (10000 x $2 + 2000 x $0.20 + 3000 x $10) per million tokens, the default model's.
    assert _usd(attempt["cost_usd"]) == Decimal("0.0504")

    prices = (await api.get("/v1/prices")).json()
    assert prices["as_of"] == PRICES_AS_OF and prices["unit"] == "USD per million tokens"
    assert prices["models"]["claude-sonnet-4-5"] == {"input": 2, "cached_input": 0.2, "output": 10}
    assert prices["models"]["house-model"] == {"input": 0.5, "cached_input": 0.5, "output": 1}
    assert prices["models"]["gpt-5"] == {"input": 1.25, "cached_input": 0.125, "output": 10}
    assert sorted(prices["overrides"]) == ["claude-sonnet-4-5", "house-model"]
    assert prices["defaults"]["codex"] == "gpt-5-codex"


def test_bad_prices_stop_the_orchestrator_from_starting(settings: OrchestratorSettings) -> None:
    values = settings.model_dump()
    with pytest.raises(ValidationError, match=r"SWARM_PRICES\['m'\]\.output must be a number"):
        OrchestratorSettings(**{**values, "prices": '{"m": {"input": 1}}'})
    with pytest.raises(ValidationError, match="SWARM_PRICES is not JSON"):
        OrchestratorSettings(**{**values, "prices": "{"})
    fine = OrchestratorSettings(**{**values, "prices": '{"m": {"input": 1, "output": 2}}'})
    assert fine.price_table().entry("codex", "m-1") == "m"
    assert fine.price_overrides() == parse_prices('{"m": {"input": 1, "output": 2}}')


# -- GET /v1/usage ---------------------------------------------------------------------------


async def _world(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> tuple[httpx.AsyncClient, list[str]]:
    """Two sessions (one of tenant acme), tasks of every kind, two personas, attempts that
    ended on two UTC days, one failed; return acme's client and the sessions' ids."""
    stored = await api.post(
        "/v1/personas", json=[{"name": "ada", "role": "backend"}, {"name": "bob", "role": "qa"}]
    )
    assert stored.status_code == 201, stored.text
    acme = await tenant_client(api, "acme")
    stored = await acme.post("/v1/personas", json=[{"name": "ada", "role": "backend"}])
    assert stored.status_code == 201, stored.text
    ours = await new_session(
        api,
        git_repo,
        [
            task("c1", agent="claude", persona="ada"),
            task("c2", agent="claude", persona="bob"),
            task("x1", agent="codex", persona="ada"),
            task("s1", agent="shell"),
        ],
    )
    theirs = (
        await acme.post(
            "/v1/sessions",
            json={
                "title": "acme's",
                "repo": str(git_repo),
                "base_ref": "main",
                "tasks": [task("g1", agent="gemini", persona="ada"), task("c3", agent="claude")],
            },
        )
    ).json()
    model = "claude-opus-4-5-20251101"
    ran: list[tuple[dict[str, Any], str, dict[str, Any], datetime]] = [
        (ours, "c1", {"usage": USAGE, "model": model, "cost_usd": 0.7}, DAY_ONE),
        (ours, "c2", {"usage": {"input": 500, "output": 50}}, DAY_TWO),
        (ours, "x1", {"usage": USAGE, "model": "gpt-5-mini"}, DAY_TWO),
        (ours, "s1", {}, DAY_ONE),
        (theirs, "g1", {"usage": USAGE, "model": "gemini-2.5-pro"}, DAY_TWO),
    ]
    for session, key, fields, at in ran:
        sid = session["id"]
        ids = await task_ids(api, sid)
        await succeed_attempt(sessionmaker, keys, sid, ids[key], at=at, **fields)
    sid = theirs["id"]
    failed_id = (await task_ids(api, sid))["c3"]
    started = outcome_event(TaskStarted, sid, failed_id, branch="x", base_commit="y")
    assert await apply(sessionmaker, keys, started) == Outcome.APPLIED
    failed = outcome_event(
        TaskFailed, sid, failed_id, reason="exit_code", usage={"input": 900, "output": 90},
        at=DAY_ONE,
    )  # fmt: skip
    assert await apply(sessionmaker, keys, failed) == Outcome.APPLIED
    return acme, [ours["id"], theirs["id"]]


async def _all_attempts(sessionmaker: SM, session_ids: list[str]) -> list[dict[str, Any]]:
    """Every ended attempt of the sessions, read from its row, with what it is grouped by
    worked out here."""
    async with sessionmaker() as db:
        rows = (
            await db.execute(
                select(Attempt, Task, Session)
                .join(Task, Task.id == Attempt.task_id)
                .join(Session, Session.id == Task.session_id)
                .where(Session.id.in_([uuid.UUID(s) for s in session_ids]))
            )
        ).all()
    found = []
    for attempt, task_row, session in rows:
        if attempt.finished_at is None:
            continue
        persona = (task_row.spec.get("assigned_persona") or {}).get("name")
        found.append(
            {
                "agent": attempt.agent,
                "usage": attempt.usage,
                "cost_usd": attempt.cost_usd,
                "session": str(session.id),
                "task": str(task_row.id),
                "persona": persona or task_row.spec.get("persona"),
                "tenant": session.tenant,
                "day": attempt.finished_at.astimezone(UTC).date().isoformat(),
            }
        )
    return found


def _sums(attempts: list[dict[str, Any]], group: str) -> dict[str | None, dict[str, Any]]:
    sums: dict[str | None, dict[str, Any]] = defaultdict(
        lambda: {"attempts": 0, "input": 0, "cached_input": 0, "output": 0, "cost": Decimal(0)}
    )
    for attempt in attempts:
        key = attempt["agent"] if group == "agent" else attempt[group]
        one = sums[key]
        one["attempts"] += 1
        for kind in ("input", "cached_input", "output"):
            one[kind] += (attempt["usage"] or {}).get(kind, 0)
        one["cost"] += _usd(attempt["cost_usd"] or 0)
    return dict(sums)


def _rows(body: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    return {
        r["key"]: {
            "attempts": r["attempts"],
            "input": r["input"],
            "cached_input": r["cached_input"],
            "output": r["output"],
            "cost": _usd(r["cost_usd"]),
        }
        for r in body["rows"]
    }


async def test_usage_sums_match_the_attempts_in_every_grouping(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    acme, sids = await _world(api, git_repo, sessionmaker, keys)
    attempts = await _all_attempts(sessionmaker, sids)
    assert len(attempts) == 6 and all(a["cost_usd"] is not None for a in attempts)
    for group in ("session", "task", "agent", "persona", "tenant", "day"):
        body = (await api.get("/v1/usage", params={"group_by": group})).json()
        assert body["group_by"] == group
        assert _rows(body) == _sums(attempts, group), group
        total = body["total"]
        assert total["attempts"] == 6 and total["key"] is None
        assert _usd(total["cost_usd"]) == sum(_usd(a["cost_usd"]) for a in attempts)
        assert total["tokens"] == total["input"] + total["output"]
    by_agent = (await api.get("/v1/usage", params={"group_by": "agent"})).json()
    assert [r["key"] for r in by_agent["rows"]][-1] == "shell"  # the costliest first
    assert {r["key"]: r["reported_cost_usd"] for r in by_agent["rows"]}["claude"] == 0.7
    by_day = (await api.get("/v1/usage", params={"group_by": "day"})).json()
    assert [r["key"] for r in by_day["rows"]] == ["2026-03-01", "2026-03-02"]  # UTC dates
    by_session = (await api.get("/v1/usage", params={"group_by": "session"})).json()
    assert {r["label"] for r in by_session["rows"]} == {"test", "acme's"}
    by_persona = _rows((await api.get("/v1/usage", params={"group_by": "persona"})).json())
    assert set(by_persona) == {"ada", "bob", None}


async def test_usage_is_filtered_by_session_and_time_and_scoped_to_a_tenant(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    acme, (ours, theirs) = await _world(api, git_repo, sessionmaker, keys)
    attempts = await _all_attempts(sessionmaker, [ours, theirs])
    mine = (await api.get("/v1/usage", params={"group_by": "task", "session_id": ours})).json()
    assert _rows(mine) == _sums([a for a in attempts if a["session"] == ours], "task")
    assert {r["label"] for r in mine["rows"]} == {"c1", "c2", "x1", "s1"}
    day_two = {"group_by": "agent", "since": "2026-03-02T00:00:00", "until": "2026-03-03T00:00:00"}
    later = (await api.get("/v1/usage", params=day_two)).json()
    assert _rows(later) == _sums([a for a in attempts if a["day"] == "2026-03-02"], "agent")
    assert later["since"].startswith("2026-03-02T00:00:00") and later["since"].endswith("Z")

    # A tenant sees its tenant's attempts only, and no other tenant's session.
    seen = (await acme.get("/v1/usage", params={"group_by": "tenant"})).json()
    assert _rows(seen) == _sums([a for a in attempts if a["session"] == theirs], "tenant")
    assert list(_rows(seen)) == ["acme"]
    hidden = await acme.get("/v1/usage", params={"session_id": ours})
    assert (hidden.status_code, hidden.json()["code"]) == (404, "session_not_found")
    everyone = (await api.get("/v1/usage", params={"group_by": "tenant"})).json()
    assert set(_rows(everyone)) == {None, "acme"}

    for bad in ("model", "", "Agent"):
        refused = await api.get("/v1/usage", params={"group_by": bad})
        assert (refused.status_code, refused.json()["code"]) == (400, "invalid_group_by"), bad
        assert "session, task, agent, persona, tenant, day" in refused.json()["message"]
    missing = await api.get("/v1/usage", params={"session_id": str(uuid.uuid4())})
    assert (missing.status_code, missing.json()["code"]) == (404, "session_not_found")
    one_row = (await api.get("/v1/usage", params={"group_by": "task", "limit": 1})).json()
    assert len(one_row["rows"]) == 1 and one_row["total"]["attempts"] == 6
