"""Plans of draft sessions (`planning/plans.py`, `/v1/sessions/{id}/plan`): planned by the
heuristic planner or a planning agent's read-only run (whose answer is validated, repaired
once, or fails the planning), edited revision by revision under a lost-update guard,
revised by feedback, and approved to run."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import TaskStarted, TaskSucceeded, WorkerOnline
from swarm_common.streams import Keys, decode
from swarm_orchestrator.db.models import PlanRevision, Task
from swarm_orchestrator.graph import scheduler
from swarm_orchestrator.graph.reports import Outcome, apply_event
from swarm_orchestrator.graph.retry import RetryPolicy
from tests.orchestrator.helpers import (
    count_rows,
    new_session,
    outcome_event,
    proven,
    task_messages,
)

SM = async_sessionmaker[AsyncSession]

GOAL = """# Accounts

## Phase 1: Model
1. Add a users table
2. Write the migration

## Phase 2: API
- POST /signup
- POST /login
"""
HEURISTIC = {"planner": {"agent": "heuristic"}}
CLAUDE = {"planner": {"agent": "claude"}}


def _plan_answer(*tasks: dict[str, Any], summary: str = "two steps") -> str:
    return json.dumps({"summary": summary, "tasks": list(tasks)})


def _t(key: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "title": key, "prompt": f"do {key}", "agent": "shell",
            "depends_on": list(deps), **extra}  # fmt: skip


async def _draft(api: httpx.AsyncClient, repo: Path, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"goal": GOAL, "plan": True, "settings": HEURISTIC, **extra}
    return await new_session(api, repo, **body)


async def _plan(api: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await api.get(f"/v1/sessions/{sid}/plan")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def _apply(sessionmaker: SM, keys: Keys, message: Any) -> Outcome:
    """Apply an event as the consumer would, with retries at once (no back-off)."""
    fields = await proven(sessionmaker, message)
    async with sessionmaker() as db, db.begin():
        return await apply_event(
            db, decode(fields), keys=keys, policy=RetryPolicy(backoff_base_s=0)
        )


async def _planner_task(sessionmaker: SM, sid: str, key: str = "_plan-1") -> Task:
    async with sessionmaker() as db:
        task = await db.scalar(
            select(Task).where(Task.session_id == uuid.UUID(sid), Task.key == key)
        )
        assert task is not None
        return task


async def _answer(sessionmaker: SM, keys: Keys, sid: str, task_id: uuid.UUID, attempt: int,
                  answer: str) -> Outcome:  # fmt: skip
    started = outcome_event(TaskStarted, sid, task_id, attempt, branch="b", base_commit="c")
    assert await _apply(sessionmaker, keys, started) == Outcome.APPLIED
    done = outcome_event(
        TaskSucceeded,
        sid,
        task_id,
        attempt,
        exit_code=0,
        answer=answer,
        usage={"input": 1000, "output": 200},
        cost_usd=0.25,
    )
    return await _apply(sessionmaker, keys, done)


# -- heuristic planning, edits, approval ---------------------------------------------------


async def test_a_goal_is_planned_into_a_draft_that_runs_nothing_until_approved(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    session = await _draft(api, git_repo)
    assert session["status"] == "draft"
    assert session["plan_status"] == "ready" and session["plan_revision"] == 1
    assert session["total"] == 0
    plan = await _plan(api, session["id"])
    keys = [t["key"] for t in plan["tasks"]]
    assert keys == ["add-a-users-table", "write-the-migration", "post-signup", "post-login"]
    assert plan["source"] == "heuristic"
    assert [m["role"] for m in plan["messages"]] == ["user", "planner"]
    assert await count_rows(sessionmaker, Task, Task.session_id == uuid.UUID(session["id"])) == 0

    approved = await api.post(f"/v1/sessions/{session['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "active"
    assert approved.json()["plan_status"] == "approved"
    tasks = (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()
    assert {t["key"]: t["depends_on"] for t in tasks} == {
        "add-a-users-table": [],
        "write-the-migration": ["add-a-users-table"],
        "post-signup": ["write-the-migration"],
        "post-login": ["write-the-migration"],
    }
    assert {t["status"] for t in tasks if t["key"] == "add-a-users-table"} == {"queued"}

    again = await api.post(f"/v1/sessions/{session['id']}/approve")
    assert again.status_code == 409 and again.json()["code"] == "session_not_draft"
    edit = await api.patch(
        f"/v1/sessions/{session['id']}/plan",
        json={"base_revision": 1, "changes": [{"op": "remove", "key": "post-login"}]},
    )
    assert edit.status_code == 409 and edit.json()["code"] == "session_not_draft"


async def test_auto_approve_runs_the_plan_as_soon_as_it_is_made(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    session = await _draft(api, git_repo, auto_approve=True)
    assert session["status"] == "active" and session["plan_status"] == "approved"
    assert session["total"] == 4


async def test_edits_make_numbered_revisions_checked_as_a_whole(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    sid = (await _draft(api, git_repo))["id"]
    url = f"/v1/sessions/{sid}/plan"
    changes = [
        {"op": "update", "key": "post-login", "set": {"agent": "codex", "priority": 5}},
        {"op": "split", "key": "post-signup", "into": [{"key": "signup-form", "prompt": "form"},
                                                      {"key": "signup-api", "prompt": "api"}]},
        {"op": "merge", "keys": ["add-a-users-table", "write-the-migration"],
         "into": {"key": "schema", "prompt": "users table and its migration"}},
        {"op": "add", "task": _t("docs", "post-login", phase="Docs", epic="accounts",
                                 estimated_hours=1.5)},
    ]  # fmt: skip
    edited = await api.patch(url, json={"base_revision": 1, "changes": changes})
    assert edited.status_code == 200, edited.text
    plan = edited.json()
    assert plan["revision"] == 2 and plan["source"] == "edit"
    graph = {t["key"]: t.get("depends_on", []) for t in plan["tasks"]}
    assert graph == {
        "schema": [],
        "signup-form": ["schema"],  # the parts took the split task's dependencies
        "signup-api": ["schema"],
        "post-login": ["schema"],  # rewired from the merged tasks
        "docs": ["post-login"],
    }
    by_key = {t["key"]: t for t in plan["tasks"]}
    assert by_key["post-login"]["agent"] == "codex" and by_key["post-login"]["priority"] == 5
    assert by_key["docs"]["phase"] == "Docs" and by_key["docs"]["estimated_hours"] == 1.5

    removed = await api.patch(
        url, json={"base_revision": 2, "changes": [{"op": "remove", "key": "post-login"}]}
    )
    assert removed.status_code == 200, removed.text
    graph = {t["key"]: t.get("depends_on", []) for t in removed.json()["tasks"]}
    assert graph["docs"] == ["schema"]  # inherited the removed task's dependencies
    assert [r["number"] for r in removed.json()["revisions"]] == [1, 2, 3]

    old = await api.get(url, params={"revision": 1})
    assert [t["key"] for t in old.json()["tasks"]][0] == "add-a-users-table"


async def test_bad_edits_are_refused_and_store_nothing(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    sid = (await _draft(api, git_repo))["id"]
    url = f"/v1/sessions/{sid}/plan"
    cycle = [{"op": "update", "key": "add-a-users-table", "set": {"depends_on": ["post-login"]}}]
    bad = {
        "dependency_cycle": {"base_revision": 1, "changes": cycle},
        "unknown agent": {"base_revision": 1, "tasks": [_t("a", agent="cobol")]},
        "unknown_dependency": {"base_revision": 1, "tasks": [_t("a", "ghost")]},
        "no task": {"base_revision": 1, "changes": [{"op": "remove", "key": "ghost"}]},
        "bad op": {"base_revision": 1, "changes": [{"op": "explode", "key": "post-login"}]},
    }
    for why, body in bad.items():
        response = await api.patch(url, json=body)
        assert response.status_code == 422, (why, response.text)
        assert response.json()["code"] in ("invalid_plan", "invalid_change"), why
        if why in ("dependency_cycle", "unknown_dependency", "unknown agent"):
            assert why.split()[-1] in json.dumps(response.json()["details"]), why
    stale = await api.patch(url, json={"base_revision": 0, "tasks": [_t("a")]})
    assert stale.status_code == 409 and stale.json()["code"] == "stale_revision"
    assert stale.json()["details"]["current"] == 1
    assert (await _plan(api, sid))["latest_revision"] == 1
    assert (
        await count_rows(sessionmaker, PlanRevision, PlanRevision.session_id == uuid.UUID(sid)) == 1
    )


async def test_two_edits_of_one_revision_one_wins_the_other_is_stale(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    sid = (await _draft(api, git_repo))["id"]
    url = f"/v1/sessions/{sid}/plan"
    bodies = [
        {"base_revision": 1, "tasks": [_t("left-1"), _t("left-2", "left-1")]},
        {"base_revision": 1, "tasks": [_t("right")]},
    ]
    for _ in range(5):
        current = (await _plan(api, sid))["latest_revision"]
        for body in bodies:
            body["base_revision"] = current
        answers = await asyncio.gather(*(api.patch(url, json=b) for b in bodies))
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409], [a.text for a in answers]
        loser = next(a for a in answers if a.status_code == 409)
        assert loser.json()["code"] == "stale_revision"
        plan = await _plan(api, sid)
        assert plan["latest_revision"] == current + 1
        winner = next(b for b, a in zip(bodies, answers, strict=True) if a.status_code == 200)
        assert [t["key"] for t in plan["tasks"]] == [t["key"] for t in winner["tasks"]]
    stored = await count_rows(sessionmaker, PlanRevision, PlanRevision.session_id == uuid.UUID(sid))
    assert stored == 6


async def test_bad_planning_requests_get_clear_errors(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    base = {"title": "t", "repo": str(git_repo), "base_ref": "main"}
    no_goal = await api.post("/v1/sessions", json={**base, "plan": True})
    assert no_goal.status_code == 422
    both = await api.post(
        "/v1/sessions", json={**base, "goal": "x", "plan": True, "tasks": [_t("a")]}
    )
    assert both.status_code == 422
    unknown = await api.post(
        "/v1/sessions",
        json={**base, "goal": "x", "plan": True, "settings": {"planner": {"agent": "cobol"}}},
    )
    assert unknown.status_code == 422

    bare = await new_session(api, git_repo)  # a draft with neither plan nor tasks
    nothing = await api.post(f"/v1/sessions/{bare['id']}/approve")
    assert nothing.status_code == 409 and nothing.json()["code"] == "no_plan"
    goalless = await api.post(f"/v1/sessions/{bare['id']}/plan", json={"agent": "heuristic"})
    assert goalless.status_code == 422 and goalless.json()["code"] == "goal_required"
    planned = await api.post(
        f"/v1/sessions/{bare['id']}/plan", json={"goal": "- one\n- two", "agent": "heuristic"}
    )
    assert planned.status_code == 200, planned.text
    assert [t["key"] for t in planned.json()["tasks"]] == ["one", "two"]

    running = await new_session(api, git_repo, tasks=[_t("a")])
    for path, body in (("plan", {"goal": "x"}), ("approve", None)):
        answer = await api.post(f"/v1/sessions/{running['id']}/{path}", json=body)
        assert answer.status_code == 409 and answer.json()["code"] == "session_not_draft"
    missing = await api.get(f"/v1/sessions/{uuid.uuid4()}/plan")
    assert missing.status_code == 404


async def test_heuristic_feedback_adds_the_tasks_a_message_lists(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    sid = (await _draft(api, git_repo))["id"]
    answer = await api.post(
        f"/v1/sessions/{sid}/plan/messages", json={"text": "- Add a logout\n- POST /login"}
    )
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert plan["revision"] == 2 and plan["source"] == "feedback"
    keys = {t["key"] for t in plan["tasks"]}
    assert {"add-a-logout", "post-login", "post-login-2"} <= keys  # a clash is renamed
    assert len(keys) == 6
    assert [m["role"] for m in plan["messages"]] == ["user", "planner", "user", "planner"]


# -- a planning agent ----------------------------------------------------------------------


async def test_a_planning_agent_answers_is_repaired_once_and_its_spend_counts(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await _draft(api, git_repo, settings=CLAUDE)
    sid = session["id"]
    assert session["plan_status"] == "planning" and session["total"] == 0
    planner = await _planner_task(sessionmaker, sid)
    assert planner.kind == "plan" and planner.agent == "claude" and planner.status == "queued"
    [message] = await task_messages(sessionmaker, planner.id)
    assert message.read_only and message.output_schema is not None
    assert "Add a users table" in message.prompt and "Answer schema" in message.prompt
    assert message.allowed_tools == ["Read", "Glob", "Grep"]

    # An invalid answer: a cycle. The attempt fails and runs again at once with the errors.
    cyclic = _plan_answer(_t("a", "b"), _t("b", "a"))
    assert await _answer(sessionmaker, keys, sid, planner.id, 1, cyclic) == Outcome.APPLIED
    planner = await _planner_task(sessionmaker, sid)
    assert planner.status == "queued" and "dependency_cycle" in (planner.feedback or "")
    assert (await _plan(api, sid))["status"] == "planning"
    second = (await task_messages(sessionmaker, planner.id))[-1]
    assert second.attempt == 2 and "dependency_cycle" in (second.feedback or "")

    good = _plan_answer(_t("model", phase="Model"), _t("api", "model", agent="codex"))
    assert await _answer(sessionmaker, keys, sid, planner.id, 2, good) == Outcome.APPLIED
    plan = await _plan(api, sid)
    assert plan["status"] == "ready" and plan["revision"] == 1 and plan["source"] == "planner"
    assert [t["key"] for t in plan["tasks"]] == ["model", "api"]
    assert plan["messages"][-1] == {**plan["messages"][-1], "role": "planner", "text": "two steps"}
    assert [r["status"] for r in plan["runs"]] == ["succeeded"]

    progress = (await api.get(f"/v1/sessions/{sid}/progress")).json()
    assert progress["total"] == 0  # the planner's run is no task of the graph
    # Both attempts count, priced as claude-sonnet-4-5 ($3 in, $15 out per million tokens)
    # whatever the CLI claimed: 2 x (1000 x 3 + 200 x 15) / 1e6.
    assert progress["cost_usd"] == 0.012 and progress["tokens"] == 2400
    runs = (await api.get(f"/v1/sessions/{sid}/tasks", params={"kind": "plan"})).json()
    assert [(r["key"], r["kind"]) for r in runs] == [("_plan-1", "plan")]
    assert (await api.get(f"/v1/sessions/{sid}/tasks")).json() == []


async def test_a_planner_that_answers_no_plan_twice_fails_the_planning_with_the_errors(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    sid = (await _draft(api, git_repo, settings=CLAUDE))["id"]
    planner = await _planner_task(sessionmaker, sid)
    assert await _answer(sessionmaker, keys, sid, planner.id, 1, "I think") == Outcome.APPLIED
    await scheduler.sweep(sessionmaker, keys=keys)
    missing = _plan_answer(_t("a", "ghost"))
    assert await _answer(sessionmaker, keys, sid, planner.id, 2, missing) == Outcome.APPLIED
    plan = await _plan(api, sid)
    assert plan["status"] == "failed"
    assert "unknown_dependency" in plan["error"] and "ghost" in plan["error"]
    assert plan["revision"] is None and plan["tasks"] == []
    approve = await api.post(f"/v1/sessions/{sid}/approve")
    assert approve.status_code == 409 and approve.json()["code"] == "no_plan"
    # A person can plan again, with another planner.
    again = await api.post(f"/v1/sessions/{sid}/plan", json={"agent": "heuristic"})
    assert again.status_code == 200 and again.json()["status"] == "ready"


async def test_feedback_makes_the_planning_agent_revise_its_plan(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    sid = (await _draft(api, git_repo, settings=CLAUDE))["id"]
    first = await _planner_task(sessionmaker, sid)
    await _answer(sessionmaker, keys, sid, first.id, 1, _plan_answer(_t("model")))
    busy = await api.post(f"/v1/sessions/{sid}/plan/messages", json={"text": "add docs"})
    assert busy.status_code == 202, busy.text
    assert busy.json()["status"] == "planning"
    again = await api.post(f"/v1/sessions/{sid}/plan/messages", json={"text": "and tests"})
    assert again.status_code == 409 and again.json()["code"] == "planning_in_progress"
    edit = await api.patch(f"/v1/sessions/{sid}/plan", json={"base_revision": 1, "tasks": []})
    assert edit.status_code in (409, 422)

    second = await _planner_task(sessionmaker, sid, "_plan-2")
    [message] = await task_messages(sessionmaker, second.id)
    assert "add docs" in message.prompt and '"model"' in message.prompt  # the current plan
    revised = _plan_answer(_t("model"), _t("docs", "model"), summary="added docs")
    await _answer(sessionmaker, keys, sid, second.id, 1, revised)
    plan = await _plan(api, sid)
    assert (
        plan["revision"] == 2 and plan["source"] == "feedback" and plan["summary"] == "added docs"
    )
    approved = await api.post(f"/v1/sessions/{sid}/approve")
    assert approved.status_code == 200 and approved.json()["total"] == 2


async def test_auto_picks_a_live_planning_agent_else_the_heuristic_planner(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    offline = await _draft(api, git_repo, settings={})
    assert offline["plan_status"] == "ready"  # nobody to plan with: heuristic
    online = WorkerOnline(worker="w-codex", agent="codex", host="h", pid=1, concurrency=1)
    async with sessionmaker() as db, db.begin():
        assert await apply_event(db, decode(await proven(sessionmaker, online)), keys=keys)
    live = await _draft(api, git_repo, settings={})
    assert live["plan_status"] == "planning"
    assert (await _planner_task(sessionmaker, live["id"])).agent == "codex"
