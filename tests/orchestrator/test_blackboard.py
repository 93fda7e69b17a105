"""Handoffs and the session blackboard, in one process on real PostgreSQL and Redis: a
succeeded task's handoff is kept on it, its facts go to the blackboard (later values win,
history kept), people write facts over the API, and a task's message carries its parents'
handoffs and the blackboard as it stood when it was queued."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.handoffs import MAX_BOARD_FACTS, Fact, Handoff
from swarm_common.messages import TaskSucceeded
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import BlackboardFact
from swarm_orchestrator.graph.reports import Outcome
from tests.orchestrator.helpers import (
    apply,
    mirror_commit,
    new_session,
    outcome_event,
    task,
    task_ids,
    task_messages,
    task_states,
)

SM = async_sessionmaker[AsyncSession]


def succeeded(session: dict[str, Any], task_id: uuid.UUID, commit: str, **handoff: Any) -> Any:
    return outcome_event(
        TaskSucceeded,
        session["id"],
        task_id,
        exit_code=0,
        commit=commit,
        changed_files=["f.txt"],
        handoff=Handoff(source="block", **handoff),
    )


async def test_a_child_gets_its_parents_handoffs_and_the_board_as_it_stood_when_queued(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    keys: Keys,
    state: AppState,
    workspace: Path,
) -> None:
    session = await new_session(
        api, git_repo, [task("api"), task("docs"), task("client", "api", "docs")]
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    person = await api.post(f"/v1/sessions/{sid}/blackboard", json={"key": "db", "value": "pg"})
    assert person.status_code == 201, person.text
    assert person.json()[0]["author"].startswith("token:")

    api_done = succeeded(
        session,
        ids["api"],
        mirror_commit(workspace, session, {"api.txt": "api"}),
        summary="Added /v2/users.",
        notes=["paginated with cursors"],
        facts=[Fact(key="api.base", value="/v2"), Fact(key="db", value="sqlite")],
    )
    assert await apply(sessionmaker, keys, api_done) == Outcome.APPLIED
    docs_done = succeeded(
        session, ids["docs"], mirror_commit(workspace, session, {"docs.txt": "d"}), summary="Docs."
    )
    assert await apply(sessionmaker, keys, docs_done) == Outcome.APPLIED

    detail = (await api.get(f"/v1/tasks/{ids['api']}")).json()
    assert detail["handoff"]["summary"] == "Added /v2/users."
    assert detail["handoff"]["notes"] == ["paginated with cursors"]
    types = [e["type"] for e in (await api.get(f"/v1/tasks/{ids['api']}/events")).json()]
    assert "task.handoff" in types and "blackboard.written" in types

    assert await state.background.merge_once() == 2
    assert (await task_states(api, sid))["client"] == ("queued", 1)
    # Written after the child was queued: not in its message.
    await api.post(f"/v1/sessions/{sid}/blackboard", json={"key": "late", "value": True})

    [message] = await task_messages(sessionmaker, ids["client"])
    assert [(h.key, h.summary, h.notes) for h in message.handoffs] == [
        ("api", "Added /v2/users.", ["paginated with cursors"]),
        ("docs", "Docs.", []),
    ]
    board = {f.key: (f.value, f.author) for f in message.blackboard}
    assert board == {"api.base": ("/v2", "task:api"), "db": ("sqlite", "task:api")}
    assert message.blackboard_omitted == 0

    now = (await api.get(f"/v1/sessions/{sid}/blackboard")).json()
    assert [f["key"] for f in now["facts"]] == ["late", "db", "api.base"]
    assert now["total"] == 3
    history = (await api.get(f"/v1/sessions/{sid}/blackboard/db")).json()
    assert [(f["value"], f["author"]) for f in history] == [
        ("sqlite", "task:api"),
        ("pg", person.json()[0]["author"]),
    ]


async def test_a_report_delivered_twice_hands_off_once(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys, workspace: Path
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    ids = await task_ids(api, session["id"])
    done = succeeded(
        session,
        ids["a"],
        mirror_commit(workspace, session, {"a.txt": "a"}),
        facts=[Fact(key="k", value=1)],
    )
    assert await apply(sessionmaker, keys, done, "env-1") == Outcome.APPLIED
    assert await apply(sessionmaker, keys, done, "env-1") == Outcome.DUPLICATE
    async with sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(BlackboardFact)) == 1


async def test_an_adapter_without_handoffs_leaves_an_empty_one(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys, workspace: Path
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    ids = await task_ids(api, session["id"])
    commit = mirror_commit(workspace, session, {"a.txt": "a"})
    done = outcome_event(TaskSucceeded, session["id"], ids["a"], exit_code=0, commit=commit)
    assert await apply(sessionmaker, keys, done) == Outcome.APPLIED
    handoff = (await api.get(f"/v1/tasks/{ids['a']}")).json()["handoff"]
    assert (handoff["summary"], handoff["source"], handoff["facts"]) == ("", "none", [])


async def test_people_write_facts_that_later_values_replace_and_null_clears(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    board = f"/v1/sessions/{session['id']}/blackboard"
    many = {"facts": [{"key": "x", "value": {"n": 1}}, {"key": "y", "value": [1, 2]}]}
    assert (await api.post(board, json=many)).status_code == 201
    assert (await api.post(board, json={"key": "x", "value": {"n": 2}})).status_code == 201
    assert (await api.post(board, json={"key": "y", "value": None})).status_code == 201
    facts = (await api.get(board)).json()["facts"]
    assert [(f["key"], f["value"]) for f in facts] == [("x", {"n": 2})]
    history = (await api.get(f"{board}/y")).json()
    assert [f["value"] for f in history] == [None, [1, 2]]


async def test_bad_facts_are_refused(api: httpx.AsyncClient, git_repo: Path) -> None:
    session = await new_session(api, git_repo, [task("a")])
    board = f"/v1/sessions/{session['id']}/blackboard"
    for body, code in [
        ({"key": "has space", "value": 1}, "validation_error"),
        ({"key": "x" * 121, "value": 1}, "validation_error"),
        ({"key": "big", "value": "v" * 5000}, "validation_error"),
        ({"value": 1}, "validation_error"),
        ({"key": "token", "value": "sk-ant-api03-" + "a" * 40}, "secret_in_value"),
    ]:
        refused = await api.post(board, json=body)
        assert (refused.status_code, refused.json()["code"]) == (422, code), body
    missing = await api.get(f"/v1/sessions/{uuid.uuid4()}/blackboard")
    assert (missing.status_code, missing.json()["code"]) == (404, "session_not_found")
    assert (await api.get(board)).json()["facts"] == []


async def test_a_large_board_is_bounded_in_task_messages(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    keys: Keys,
    state: AppState,
    workspace: Path,
) -> None:
    session = await new_session(api, git_repo, [task("a"), task("b", "a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    total = MAX_BOARD_FACTS + 40  # in batches of 30 (MAX_FACTS)
    for start in range(0, total, 30):
        facts = [{"key": f"k{n}", "value": n} for n in range(start, start + 30)]
        assert (await api.post(f"/v1/sessions/{sid}/blackboard", json={"facts": facts})).is_success
    commit = mirror_commit(workspace, session, {"a.txt": "a"})
    assert await apply(sessionmaker, keys, succeeded(session, ids["a"], commit)) == Outcome.APPLIED
    assert await state.background.merge_once() == 1
    [message] = await task_messages(sessionmaker, ids["b"])
    assert len(message.blackboard) == MAX_BOARD_FACTS
    assert message.blackboard_omitted == total - MAX_BOARD_FACTS
    assert message.blackboard[0].key == f"k{total - 1}"  # the newest first
