"""Budgets (`graph/budgets.py`, `api/routes/budgets.py`): a warning at 80% of a limit, once
however often a result is delivered and however many orchestrators apply results at once;
a spent budget suspends the session (`budget_exhausted`) and starts nothing new; `stop`
cancels its running attempts, whose tasks wait (not failed) and whose late results still
count; raising the budget resumes it and queues what is ready; a tenant's budget does the
same to all its sessions; a task that passed its own cap fails for good."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from swarm_common.messages import TaskCancelled, TaskFailed, TaskStarted, TaskSucceeded
from swarm_common.prices import PriceTable
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Attempt, Event, Outbox, Session
from swarm_orchestrator.graph import budgets
from swarm_orchestrator.graph.locking import lock_session
from swarm_orchestrator.graph.reports import Outcome
from tests.orchestrator.helpers import (
    apply,
    count_rows,
    new_session,
    outcome_event,
    task,
    task_ids,
    task_messages,
    task_states,
    tenant_client,
)

MODEL = "claude-sonnet-4-5"


def claude(key: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return task(key, *deps, prompt="Do it.", agent="claude", model=MODEL, **extra)


def usage_costing(usd: float) -> dict[str, int]:
    """Output tokens of `MODEL` that cost about `usd` by the built-in table."""
    per_token = PriceTable().cost("claude", MODEL, {"output": 1_000_000}).usd / 1_000_000
    return {"input": 0, "cached_input": 0, "output": int(Decimal(str(usd)) / per_token)}


def succeeded(session_id: str, task_id: uuid.UUID, usd: float, attempt: int = 1) -> TaskSucceeded:
    return outcome_event(  # type: ignore[return-value]
        TaskSucceeded,
        session_id,
        task_id,
        attempt,
        exit_code=0,
        usage=usage_costing(usd),
        model=MODEL,
    )


async def entries(state: AppState, session_id: str, type: str) -> list[dict[str, Any]]:
    async with state.sessionmaker() as db:
        rows = (
            await db.scalars(
                select(Event.data)
                .where(Event.session_id == uuid.UUID(session_id), Event.type == type)
                .order_by(Event.id)
            )
        ).all()
    return [dict(r or {}) for r in rows]


async def suspension(state: AppState, session_id: str) -> tuple[str, str | None]:
    async with state.sessionmaker() as db:
        row = await db.get(Session, uuid.UUID(session_id), populate_existing=True)
        assert row is not None
        return row.status, row.suspended_reason


async def cancel_requests(state: AppState) -> set[tuple[str, int]]:
    async with state.sessionmaker() as db:
        rows = (await db.scalars(select(Outbox).where(Outbox.kind == "cancel"))).all()
    return {(r.payload["request"]["task_id"], r.payload["request"]["attempt"]) for r in rows}


async def attempt_row(state: AppState, task_id: uuid.UUID, number: int) -> Attempt:
    async with state.sessionmaker() as db:
        row = await db.scalar(
            select(Attempt).where(Attempt.task_id == task_id, Attempt.number == number)
        )
        assert row is not None
        return row


async def test_the_80_percent_warning_is_given_once_for_a_result_delivered_twice(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    session = await new_session(
        api, git_repo, [claude("a"), claude("b")], settings={"budget": {"usd": 1}}
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    result = succeeded(sid, ids["a"], 0.85)
    assert await apply(state.sessionmaker, state.keys, result, "1-1") == Outcome.APPLIED
    assert await apply(state.sessionmaker, state.keys, result, "1-1") == Outcome.DUPLICATE
    async with state.sessionmaker() as db, db.begin():  # another check: nothing new to say
        locked = await lock_session(db, uuid.UUID(sid))
        assert locked is not None
        assert await budgets.check(db, locked, keys=state.keys)
    [warning] = await entries(state, sid, "session.budget_warning")
    assert warning["limit"] == "session.usd" and warning["amount"] == 1
    assert 84.0 <= warning["percent"] < 86.0
    assert await suspension(state, sid) == ("active", None)

    shown = (await api.get(f"/v1/sessions/{sid}/budget")).json()
    assert shown["warned"] == ["session.usd=1"] and not shown["exhausted"]
    assert 0.84 <= shown["spent"]["usd"] < 0.86
    assert abs(shown["remaining"]["usd"] - (1 - shown["spent"]["usd"])) < 1e-6
    assert shown["spent"]["tokens"] == usage_costing(0.85)["output"]


async def test_a_spent_budget_suspends_the_session_and_raising_it_resumes_it(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    session = await new_session(
        api,
        git_repo,
        [claude("a"), claude("b"), claude("c", "a")],
        settings={"budget": {"usd": 1, "on_exhausted": "finish"}},
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    started = outcome_event(TaskStarted, sid, ids["b"], branch="x", base_commit="y")
    assert await apply(state.sessionmaker, state.keys, started) == Outcome.APPLIED
    assert await apply(state.sessionmaker, state.keys, succeeded(sid, ids["a"], 1.2))

    assert await suspension(state, sid) == ("suspended", "budget_exhausted")
    [suspended] = await entries(state, sid, "session.suspended")
    assert suspended["reason"] == "budget_exhausted"
    assert suspended["limits"][0]["limit"] == "session.usd"
    assert await cancel_requests(state) == set()  # finish: b runs on
    await state.background.merge_once()  # a merges; c would be ready
    await state.background.sweep_once()
    states = await task_states(api, sid)
    assert states["b"] == ("running", 1) and states["c"] == ("pending", 0)
    assert await task_messages(state.sessionmaker, ids["c"]) == []
    refused = await api.post(f"/v1/sessions/{sid}/resume")  # a person cannot resume it
    assert refused.status_code == 409 and refused.json()["code"] == "budget_exhausted"

    raised = await api.put(f"/v1/sessions/{sid}/budget", json={"usd": 5})
    assert raised.status_code == 200, raised.text
    assert raised.json()["exhausted"] is False and raised.json()["budget"]["usd"] == 5
    assert await suspension(state, sid) == ("active", None)
    assert (await entries(state, sid, "session.resumed"))[-1]["reason"] == "the budget was raised"
    assert (await task_states(api, sid))["c"] == ("queued", 1)
    shown = (await api.get(f"/v1/sessions/{sid}")).json()
    assert shown["settings"]["budget"]["usd"] == 5  # still valid session settings


async def test_stop_cancels_running_attempts_whose_tasks_wait_and_whose_spend_counts(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    session = await new_session(
        api,
        git_repo,
        [claude("a"), claude("b"), claude("c", max_attempts=1)],
        settings={"budget": {"usd": 1, "on_exhausted": "stop"}},
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    started = outcome_event(TaskStarted, sid, ids["b"], branch="x", base_commit="y")
    assert await apply(state.sessionmaker, state.keys, started) == Outcome.APPLIED
    assert await apply(state.sessionmaker, state.keys, succeeded(sid, ids["a"], 1.2))

    assert await suspension(state, sid) == ("suspended", "budget_exhausted")
    assert await cancel_requests(state) == {(str(ids["b"]), 1), (str(ids["c"]), 1)}
    states = await task_states(api, sid)
    assert states["b"] == ("pending", 1) and states["c"] == ("pending", 1)  # not failed
    for key in ("b", "c"):
        stopped = await attempt_row(state, ids[key], 1)
        assert (stopped.status, stopped.reason) == ("cancelled", "budget_exhausted")

    # b's adapter kills its agent and reports what it had spent: counted, once.
    late = outcome_event(
        TaskCancelled, sid, ids["b"], reason="budget_exhausted", usage=usage_costing(0.3)
    )
    assert await apply(state.sessionmaker, state.keys, late, "2-1") == Outcome.IGNORED
    assert await apply(state.sessionmaker, state.keys, late, "2-1") == Outcome.IGNORED
    spent = (await api.get(f"/v1/sessions/{sid}/budget")).json()["spent"]["usd"]
    assert 1.49 <= spent <= 1.51

    raised = await api.put(f"/v1/sessions/{sid}/budget", json={"usd": 10, "on_exhausted": "stop"})
    assert raised.status_code == 200, raised.text
    assert await suspension(state, sid) == ("active", None)
    states = await task_states(api, sid)
    assert states["b"] == ("queued", 2) and states["c"] == ("queued", 2)  # c: max_attempts 1


async def test_a_task_past_its_own_cap_fails_for_good(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    session = await new_session(
        api, git_repo, [claude("a", max_attempts=3)], settings={"budget": {"per_task_usd": 0.1}}
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    [message] = await task_messages(state.sessionmaker, ids["a"])
    assert message.settings["budget"]["per_task_usd"] == 0.1  # what its adapter holds it to
    failed = outcome_event(
        TaskFailed,
        sid,
        ids["a"],
        exit_code=None,
        reason="budget_exhausted",
        error="spent $0.2 ...",
        usage=usage_costing(0.2),
    )
    assert await apply(state.sessionmaker, state.keys, failed) == Outcome.APPLIED
    assert (await task_states(api, sid))["a"] == ("failed", 1)
    [entry] = await entries(state, sid, "task.failed")
    assert entry["reason"] == "budget_exhausted" and entry["will_retry"] is False


async def test_a_tenant_budget_suspends_all_its_sessions_and_raising_it_resumes_them(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    acme = await tenant_client(api, "acme")
    globex = await tenant_client(api, "globex")
    async with acme, globex:
        first = await new_session(acme, git_repo, [claude("a")])
        second = await new_session(acme, git_repo, [claude("a")])
        third = await new_session(acme, git_repo, [claude("a")])
        other = await new_session(globex, git_repo, [claude("a")])
        set_ = await api.put("/v1/tenants/acme/budget", json={"usd": 1})
        assert set_.status_code == 200, set_.text
        refused = await acme.put("/v1/tenants/acme/budget", json={"usd": 100})
        assert refused.status_code == 403  # a tenant does not raise its own cap
        assert (await globex.get("/v1/tenants/acme/budget")).status_code == 403

        ids = await task_ids(acme, first["id"])
        result = succeeded(first["id"], ids["a"], 1.2)
        assert await apply(state.sessionmaker, state.keys, result) == Outcome.APPLIED
        assert await suspension(state, first["id"]) == ("suspended", "budget_exhausted")
        added = await acme.post(f"/v1/sessions/{second['id']}/tasks", json=[claude("more")])
        assert added.status_code == 201, added.text
        assert (await task_states(acme, second["id"]))["more"] == ("pending", 0)  # not started
        assert await suspension(state, second["id"]) == ("suspended", "budget_exhausted")
        assert await suspension(state, third["id"]) == ("active", None)  # idle: it queues none
        await state.background.sweep_once()  # the tenant's other sessions learn of it
        assert await suspension(state, third["id"]) == ("suspended", "budget_exhausted")
        assert await suspension(state, second["id"]) == ("suspended", "budget_exhausted")
        assert await suspension(state, other["id"]) == ("active", None)
        shown = (await acme.get("/v1/tenants/acme/budget")).json()
        assert shown["exhausted"] and 1.19 <= shown["spent"]["usd"] <= 1.21
        assert (await acme.get(f"/v1/sessions/{second['id']}/budget")).json()["exhausted"]

        raised = await api.put("/v1/tenants/acme/budget", json={"usd": 5})
        assert raised.status_code == 200 and not raised.json()["exhausted"]
        for session in (first, second, third):
            assert await suspension(state, session["id"]) == ("active", None)


async def test_two_orchestrators_applying_results_at_once_warn_once(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    session = await new_session(
        api, git_repo, [claude("a"), claude("b")], settings={"budget": {"tokens": 10**9}}
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    # Each result alone spends 85% of the dollar budget set now: both see 80% passed.
    assert (await api.put(f"/v1/sessions/{sid}/budget", json={"usd": 1})).status_code == 200
    outcomes = await asyncio.gather(
        apply(state.sessionmaker, state.keys, succeeded(sid, ids["a"], 0.85)),
        apply(state.sessionmaker, state.keys, succeeded(sid, ids["b"], 0.85)),
    )
    assert list(outcomes) == [Outcome.APPLIED, Outcome.APPLIED]
    assert len(await entries(state, sid, "session.budget_warning")) == 1
    assert len(await entries(state, sid, "session.suspended")) == 1
    assert (
        await count_rows(
            state.sessionmaker,
            Event,
            Event.session_id == uuid.UUID(sid),
            Event.type == "session.resumed",
        )
        == 0
    )


async def test_a_person_pausing_a_budget_suspension_keeps_it_paused(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    session = await new_session(api, git_repo, [claude("a"), claude("b")], settings={})
    sid = session["id"]
    ids = await task_ids(api, sid)
    assert (await api.put(f"/v1/sessions/{sid}/budget", json={"usd": 1})).status_code == 200
    assert await apply(state.sessionmaker, state.keys, succeeded(sid, ids["a"], 1.5))
    assert await suspension(state, sid) == ("suspended", "budget_exhausted")
    assert (await api.post(f"/v1/sessions/{sid}/pause")).status_code == 200
    assert await suspension(state, sid) == ("suspended", None)  # a person's pause now
    assert (await api.put(f"/v1/sessions/{sid}/budget", json={"usd": 5})).status_code == 200
    assert await suspension(state, sid) == ("suspended", None)  # raising it does not resume
    assert (await api.post(f"/v1/sessions/{sid}/resume")).status_code == 200
    assert await suspension(state, sid) == ("active", None)
