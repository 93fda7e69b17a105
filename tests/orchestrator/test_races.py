"""Best of N (`graph.races`): a task with `race` runs as contenders at once; the first whose
gates (and review) pass wins and its work is merged as the task's, the others are
cancelled; when all fail the task fails; the contenders' spend is the task's."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import TaskFailed, TaskStarted, TaskSucceeded
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Task
from swarm_orchestrator.graph.reports import Outcome
from tests.orchestrator.helpers import (
    apply,
    assert_counted,
    mirror_commit,
    new_session,
    outcome_event,
    succeed_attempt,
    task,
    task_ids,
    task_messages,
    task_states,
)

RACE = {"n": 3, "agents": ["claude", "codex"]}


async def contenders(
    sessionmaker: async_sessionmaker[AsyncSession], raced: uuid.UUID
) -> list[Task]:
    async with sessionmaker() as db:
        rows = await db.scalars(select(Task).where(Task.races_task_id == raced).order_by(Task.key))
        return list(rows.all())


async def start(
    sessionmaker: async_sessionmaker[AsyncSession], keys: Keys, sid: str, tid: uuid.UUID
) -> None:
    started = outcome_event(TaskStarted, sid, tid, 1, branch="x", base_commit="y")
    assert await apply(sessionmaker, keys, started) == Outcome.APPLIED


async def test_the_first_contender_to_pass_wins_and_the_others_are_cancelled(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    state: AppState,
    workspace: Path,
) -> None:
    session = await new_session(
        api, git_repo, [task("a", agent="claude", race=RACE), task("b", "a")]
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    assert await task_states(api, sid) == {"a": ("racing", 1), "b": ("pending", 0)}
    racers = await contenders(sessionmaker, ids["a"])
    assert [(c.kind, c.agent, c.status) for c in racers] == [
        ("race", "claude", "queued"),
        ("race", "codex", "queued"),
        ("race", "claude", "queued"),
    ]
    branches = set()
    for racer in racers:
        [message] = await task_messages(sessionmaker, racer.id)
        assert message.base_commit == session["base_commit"] and not message.read_only
        branches.add(message.branch)
    assert len(branches) == 3  # each in its own worktree, on its own branch
    one, two, three = racers

    for racer in (one, two, three):
        await start(sessionmaker, keys, sid, racer.id)
    failed = outcome_event(TaskFailed, sid, two.id, 1, reason="gate_failed", error="tests fail")
    assert await apply(sessionmaker, keys, failed) == Outcome.APPLIED
    assert (await task_states(api, sid))["a"] == ("racing", 1)

    work = mirror_commit(workspace, session, {"a.txt": "one"})
    handoff = {"summary": "one did it", "facts": [{"key": "winner", "value": "one"}],
               "source": "block"}  # fmt: skip
    won = outcome_event(
        TaskSucceeded, sid, one.id, 1, exit_code=0, commit=work, changed_files=["a.txt"],
        cost_usd=0.25, usage={"input": 100, "output": 10}, handoff=handoff,
    )  # fmt: skip
    assert await apply(sessionmaker, keys, won) == Outcome.APPLIED
    a = (await api.get(f"/v1/tasks/{ids['a']}")).json()
    assert (a["status"], a["merge_status"], a["result"]["commit"]) == ("succeeded", "pending", work)
    assert a["handoff"]["summary"] == "one did it"  # the winner hands off for the task
    board = (await api.get(f"/v1/sessions/{sid}/blackboard")).json()["facts"]
    assert [(f["key"], f["value"], f["author"]) for f in board] == [("winner", "one", "task:a")]
    states = {c.key: c.status for c in await contenders(sessionmaker, ids["a"])}
    assert states == {one.key: "succeeded", two.key: "failed", three.key: "cancelled"}

    late = mirror_commit(workspace, session, {"a.txt": "three"})
    lost = outcome_event(
        TaskSucceeded, sid, three.id, 1, exit_code=0, commit=late, cost_usd=0.5,
        handoff={"summary": "three", "facts": [{"key": "winner", "value": "three"}]},
    )  # fmt: skip
    assert await apply(sessionmaker, keys, lost) in (Outcome.IGNORED, Outcome.STALE)

    assert await state.background.merge_once() == 1
    assert await task_states(api, sid) == {"a": ("succeeded", 1), "b": ("queued", 1)}
    head = (await api.get(f"/v1/sessions/{sid}")).json()["integration_head"]
    mirror = workspace / "repos" / f"{sid}.git"
    from swarm_common import git

    assert git.git("show", f"{head}:a.txt", git_dir=mirror).stdout == "one"
    board = (await api.get(f"/v1/sessions/{sid}/blackboard")).json()["facts"]
    assert [f["value"] for f in board] == ["one"]  # a loser's facts count for nothing
    [listed] = [t for t in (await api.get(f"/v1/sessions/{sid}/tasks")).json() if t["key"] == "a"]
    # The contenders' spend, priced as claude-sonnet-4-5: (100 x $3 + 10 x $15) / 1e6.
    assert listed["cost_usd"] == 0.00045 and listed["tokens"] == 110
    events = [e["type"] for e in (await api.get(f"/v1/tasks/{ids['a']}/events")).json()]
    assert "task.racing" in events and "task.race_won" in events
    progress = (await api.get(f"/v1/sessions/{sid}/progress")).json()
    assert progress["total"] == 2  # contenders are no part of the graph
    assert await assert_counted(sessionmaker, sid) == (5, 1)  # against its limits, they are


async def test_when_every_contender_fails_the_task_fails(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
) -> None:
    session = await new_session(
        api, git_repo, [task("a", agent="claude", race={"n": 2}), task("b", "a")]
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    for racer in await contenders(sessionmaker, ids["a"]):
        assert racer.agent == "claude"
        await start(sessionmaker, keys, sid, racer.id)
        failed = outcome_event(TaskFailed, sid, racer.id, 1, reason="exit_code", error="boom")
        assert await apply(sessionmaker, keys, failed) == Outcome.APPLIED
    assert await task_states(api, sid) == {"a": ("failed", 1), "b": ("blocked", 0)}
    a = (await api.get(f"/v1/tasks/{ids['a']}")).json()
    assert a["reason"].startswith("every contender failed: _race-a-")


async def test_a_contender_wins_only_once_its_review_passes(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    workspace: Path,
) -> None:
    review = {"agent": "gemini", "max_rounds": 1}
    session = await new_session(
        api, git_repo, [task("a", agent="claude", race={"n": 2}, review=review)]
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    one, two = await contenders(sessionmaker, ids["a"])
    work = mirror_commit(workspace, session, {"a.txt": "one"})
    await succeed_attempt(sessionmaker, keys, sid, one.id, commit=work)
    assert (await task_states(api, sid))["a"] == ("racing", 1)  # not before its verdict
    async with sessionmaker() as db:
        run = await db.scalar(select(Task).where(Task.reviews_task_id == one.id))
    assert run is not None and run.agent == "gemini"
    verdict = json.dumps(
        {"verdict": "PASS", "summary": "fine", "critical_issues": [], "recommendations": []}
    )
    await succeed_attempt(sessionmaker, keys, sid, run.id, answer=verdict)
    a = (await api.get(f"/v1/tasks/{ids['a']}")).json()
    assert (a["status"], a["result"]["commit"]) == ("succeeded", work)
    assert {c.key: c.status for c in await contenders(sessionmaker, ids["a"])} == {
        one.key: "succeeded",
        two.key: "cancelled",
    }


async def test_cancelling_a_racing_task_cancels_its_contenders(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    git_repo: Path,
) -> None:
    session = await new_session(api, git_repo, [task("a", agent="claude", race={"n": 2})])
    ids = await task_ids(api, session["id"])
    cancelled = await api.post(f"/v1/tasks/{ids['a']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert {c.status for c in await contenders(sessionmaker, ids["a"])} == {"cancelled"}
