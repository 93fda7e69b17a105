"""Scheduling under concurrency: two orchestrators finishing two parents of one child at the
same moment, and two sweeps at once, queue each task exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git
from swarm_common.messages import TaskFailed, TaskSucceeded
from swarm_common.streams import Keys
from swarm_orchestrator.db.models import Attempt, Outbox
from swarm_orchestrator.graph import scheduler
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.integration import merges
from tests.orchestrator.helpers import (
    apply,
    mirror_commit,
    new_session,
    outcome_event,
    task,
    task_ids,
)

SM = async_sessionmaker[AsyncSession]


async def _attempts(sessionmaker: SM, task_id: object) -> int:
    async with sessionmaker() as db:
        return int(
            await db.scalar(
                select(func.count()).select_from(Attempt).where(Attempt.task_id == task_id)
            )
            or 0
        )


async def test_parents_finishing_and_merging_at_once_queue_the_child_once(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys, workspace: Path
) -> None:
    for _ in range(8):
        session = await new_session(api, git_repo, [task("a"), task("b"), task("c", "a", "b")])
        sid = session["id"]
        ids = await task_ids(api, sid)
        events = [
            outcome_event(
                TaskSucceeded,
                sid,
                ids[k],
                exit_code=0,
                commit=mirror_commit(workspace, session, {f"{k}.txt": k}),
            )
            for k in ("a", "b")
        ]
        outcomes = await asyncio.gather(*(apply(sessionmaker, keys, e) for e in events))
        assert outcomes == [Outcome.APPLIED, Outcome.APPLIED]
        # Two merge loops (two orchestrator replicas) at once: each task merges once.
        merged = await asyncio.gather(
            *(merges.merge_pending(sessionmaker, workspace=workspace, keys=keys) for _ in "xy")
        )
        assert sum(merged) == 2
        child = (await api.get(f"/v1/tasks/{ids['c']}")).json()
        assert (child["status"], child["attempt"]) == ("queued", 1)
        assert await _attempts(sessionmaker, ids["c"]) == 1
        mirror = workspace / "repos" / f"{sid}.git"
        merges_made = git.git(
            "rev-list", "--merges", "--count", child["base_commit"], git_dir=mirror
        ).stdout
        assert int(merges_made) == 2


async def test_concurrent_sweeps_queue_a_due_retry_once(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task(f"t{i}", max_attempts=2) for i in range(5)])
    sid = session["id"]
    ids = await task_ids(api, sid)
    for task_id in ids.values():
        failed = outcome_event(TaskFailed, sid, task_id, reason="exit_code", exit_code=1)
        await apply(sessionmaker, keys, failed)
    async with sessionmaker() as db, db.begin():
        await db.execute(text("UPDATE tasks SET retry_at = now() - interval '1 second'"))
    async with sessionmaker() as db:
        before = await db.scalar(select(func.count()).select_from(Outbox))
    queued = await asyncio.gather(*(scheduler.sweep(sessionmaker, keys=keys) for _ in range(4)))
    assert sum(queued) == 5
    async with sessionmaker() as db:
        after = await db.scalar(select(func.count()).select_from(Outbox))
    assert (after or 0) - (before or 0) == 5
    for task_id in ids.values():
        assert await _attempts(sessionmaker, task_id) == 2


async def test_nothing_is_queued_in_a_cancelled_session(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a"), task("b", "a")])
    sid = session["id"]
    cancelled = await api.post(f"/v1/sessions/{sid}/cancel")
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["counts"] == {"cancelled": 2}
    assert await scheduler.sweep(sessionmaker, keys=keys) == 0
    adding = await api.post(f"/v1/sessions/{sid}/tasks", json=[task("c")])
    assert (adding.status_code, adding.json()["code"]) == (409, "session_closed")
    async with sessionmaker() as db:
        kinds = (await db.scalars(select(Outbox.kind).order_by(Outbox.id))).all()
    assert kinds == ["xadd"]  # a's task message, withheld: nobody has it to stop
