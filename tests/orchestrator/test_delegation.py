"""Agents that delegate, in one process on real PostgreSQL and Redis: the follow-up tasks a
handoff proposes wait for a person (`approve`), run (`auto`) or are refused (`off`, past the
depth limit, past the cap per task), and the timeline says who proposed them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.handoffs import Handoff, Proposal
from swarm_common.messages import TaskSucceeded
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import TaskProposal
from swarm_orchestrator.graph.reports import Outcome
from tests.orchestrator.helpers import (
    apply,
    mirror_commit,
    new_session,
    outcome_event,
    task,
    task_ids,
    task_states,
)

SM = async_sessionmaker[AsyncSession]

TWO = [
    Proposal(title="Write the client tests", prompt="true", role="qa"),
    Proposal(key="docs", title="Document the API", prompt="true", depends_on=["base"]),
]


async def _succeed(
    sessionmaker: SM,
    keys: Keys,
    workspace: Path,
    session: dict[str, Any],
    task_id: uuid.UUID,
    proposals: list[Proposal],
    envelope_id: str | None = None,
) -> Outcome:
    commit = mirror_commit(workspace, session, {f"{task_id}.txt": "work"})
    done = outcome_event(
        TaskSucceeded,
        session["id"],
        task_id,
        exit_code=0,
        commit=commit,
        handoff=Handoff(summary="done", proposals=proposals, source="block"),
    )
    return await apply(sessionmaker, keys, done, envelope_id)


async def _session(api: httpx.AsyncClient, repo: Path, delegation: Any) -> dict[str, Any]:
    settings = {} if delegation is None else {"delegation": delegation}
    return await new_session(api, repo, [task("base"), task("build")], settings=settings)


async def test_with_approve_proposals_wait_for_a_person(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    keys: Keys,
    state: AppState,
    workspace: Path,
) -> None:
    session = await _session(api, git_repo, None)  # approve is the default
    sid = session["id"]
    ids = await task_ids(api, sid)
    assert await _succeed(sessionmaker, keys, workspace, session, ids["build"], TWO, "e1") == (
        Outcome.APPLIED
    )
    assert await _succeed(sessionmaker, keys, workspace, session, ids["build"], TWO, "e1") == (
        Outcome.DUPLICATE
    )
    proposals = (await api.get(f"/v1/sessions/{sid}/proposals")).json()
    assert [(p["key"], p["status"], p["depth"]) for p in proposals] == [
        ("write-the-client-tests", "proposed", 1),
        ("docs", "proposed", 1),
    ]
    assert proposals[1]["spec"]["depends_on"] == ["build", "base"]
    assert set(await task_states(api, sid)) == {"base", "build"}  # nothing made yet

    accepted = await api.post(f"/v1/sessions/{sid}/proposals/{proposals[0]['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    again = await api.post(f"/v1/sessions/{sid}/proposals/{proposals[0]['id']}/accept")
    assert (again.status_code, again.json()["code"]) == (409, "proposal_decided")
    refused = await api.post(
        f"/v1/sessions/{sid}/proposals/{proposals[1]['id']}/refuse", json={"reason": "later"}
    )
    assert (refused.json()["status"], refused.json()["reason"]) == ("refused", "later")

    states = await task_states(api, sid)
    assert states["write-the-client-tests"] == ("pending", 0)  # waits for build to merge
    assert "docs" not in states
    new_id = accepted.json()["created_task_id"]
    timeline = (await api.get(f"/v1/tasks/{new_id}/events")).json()
    delegated = [e for e in timeline if e["type"] == "task.delegated"]
    assert delegated and delegated[0]["data"]["proposed_by"] == "build"
    assert delegated[0]["actor"].startswith("token:")
    await state.background.merge_once()
    assert (await task_states(api, sid))["write-the-client-tests"] == ("queued", 1)


async def test_with_auto_proposals_become_tasks_that_run(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    keys: Keys,
    state: AppState,
    workspace: Path,
) -> None:
    session = await _session(api, git_repo, "auto")
    sid = session["id"]
    ids = await task_ids(api, sid)
    await _succeed(sessionmaker, keys, workspace, session, ids["base"], [])
    await _succeed(sessionmaker, keys, workspace, session, ids["build"], TWO)
    proposals = (await api.get(f"/v1/sessions/{sid}/proposals")).json()
    assert [p["status"] for p in proposals] == ["accepted", "accepted"]
    assert await state.background.merge_once() == 2
    states = await task_states(api, sid)
    assert states["write-the-client-tests"] == ("queued", 1)
    assert states["docs"] == ("queued", 1)
    build_timeline = (await api.get(f"/v1/tasks/{ids['build']}/events")).json()
    proposed = [e["data"] for e in build_timeline if e["type"] == "task.proposed"]
    assert [(p["key"], p["proposed_by"], p["status"]) for p in proposed] == [
        ("write-the-client-tests", "build", "proposed"),
        ("docs", "build", "proposed"),
    ]
    new_ids = await task_ids(api, sid)
    delegated = [
        e
        for e in (await api.get(f"/v1/tasks/{new_ids['docs']}/events")).json()
        if e["type"] == "task.delegated"
    ]
    assert delegated[0]["data"]["proposed_by"] == "build"


async def test_past_the_depth_limit_proposals_are_refused_with_the_reason(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    keys: Keys,
    state: AppState,
    workspace: Path,
) -> None:
    session = await _session(api, git_repo, {"policy": "auto", "max_depth": 1})
    sid = session["id"]
    ids = await task_ids(api, sid)
    first = [Proposal(key="child", title="Child", prompt="true")]
    await _succeed(sessionmaker, keys, workspace, session, ids["build"], first)
    await state.background.merge_once()
    child = (await task_ids(api, sid))["child"]
    assert (await task_states(api, sid))["child"] == ("queued", 1)
    second = [Proposal(key="grandchild", title="Grandchild", prompt="true")]
    await _succeed(sessionmaker, keys, workspace, session, child, second)
    proposals = (await api.get(f"/v1/sessions/{sid}/proposals")).json()
    last = proposals[-1]
    assert (last["key"], last["status"], last["depth"]) == ("grandchild", "refused", 2)
    assert "too deep" in last["reason"] and "limit of 1" in last["reason"]
    assert "grandchild" not in await task_states(api, sid)
    timeline = (await api.get(f"/v1/tasks/{child}/events")).json()
    [entry] = [e["data"] for e in timeline if e["type"] == "task.proposed"]
    assert entry["status"] == "refused" and "too deep" in entry["reason"]


async def test_off_and_the_cap_per_task_refuse_with_the_reason(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys, workspace: Path
) -> None:
    off = await _session(api, git_repo, "off")
    ids = await task_ids(api, off["id"])
    await _succeed(sessionmaker, keys, workspace, off, ids["build"], TWO)
    refused = (await api.get(f"/v1/sessions/{off['id']}/proposals")).json()
    assert [p["status"] for p in refused] == ["refused", "refused"]
    assert "delegation is off" in refused[0]["reason"]

    capped = await _session(api, git_repo, {"policy": "approve", "max_per_task": 1})
    ids = await task_ids(api, capped["id"])
    await _succeed(sessionmaker, keys, workspace, capped, ids["build"], TWO)
    listed = (await api.get(f"/v1/sessions/{capped['id']}/proposals")).json()
    assert [p["status"] for p in listed] == ["proposed", "refused"]
    assert "too many" in listed[1]["reason"]


async def test_a_proposal_that_makes_no_valid_task_is_refused(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys, workspace: Path
) -> None:
    session = await _session(api, git_repo, "auto")
    ids = await task_ids(api, session["id"])
    bad = [
        Proposal(key="base", title="Taken key", prompt="true"),
        Proposal(title="Ghost", prompt="true", depends_on=["nowhere"]),
    ]
    await _succeed(sessionmaker, keys, workspace, session, ids["build"], bad)
    listed = (await api.get(f"/v1/sessions/{session['id']}/proposals")).json()
    assert [p["status"] for p in listed] == ["refused", "refused"]
    assert "nowhere" in listed[1]["reason"]
    async with sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(TaskProposal)) == 2
    assert set(await task_states(api, session["id"])) == {"base", "build"}
