"""The owner of task state: every change goes through the transition tables, an illegal one
raises before anything is stored, and a legal one writes its timeline entry in the same
transaction."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.states import (
    ATTEMPT_TRANSITIONS,
    MERGE_TRANSITIONS,
    SESSION_TRANSITIONS,
    TASK_TRANSITIONS,
    AttemptStatus,
    IllegalTransition,
    MergeStatus,
    SessionStatus,
    TaskStatus,
    check_transition,
)
from swarm_common.streams import Keys
from swarm_orchestrator.db.models import Attempt, Event, Outbox, Task
from swarm_orchestrator.graph import session_state, task_state
from swarm_orchestrator.graph.locking import CLOSED_SESSION_STATES, lock_task
from tests.orchestrator.helpers import new_session, task, task_ids

SM = async_sessionmaker[AsyncSession]


def test_every_state_has_a_row_in_its_table() -> None:
    assert set(TASK_TRANSITIONS) == set(TaskStatus)
    assert set(MERGE_TRANSITIONS) == {None, *MergeStatus}
    assert set(ATTEMPT_TRANSITIONS) == set(AttemptStatus)
    assert set(SESSION_TRANSITIONS) == set(SessionStatus)
    for table in (TASK_TRANSITIONS, MERGE_TRANSITIONS, ATTEMPT_TRANSITIONS, SESSION_TRANSITIONS):
        for current, allowed in table.items():
            assert current not in allowed, f"{current} → itself is not a change"


def test_a_task_leaves_a_final_state_only_to_run_again_or_be_cancelled() -> None:
    for final in (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.BLOCKED):
        assert TASK_TRANSITIONS[final] <= {TaskStatus.PENDING, TaskStatus.CANCELLED}
    assert TASK_TRANSITIONS[TaskStatus.PENDING] == {
        TaskStatus.QUEUED,
        TaskStatus.RACING,  # best of N: its contenders run for it
        TaskStatus.BLOCKED,
        TaskStatus.CANCELLED,
    }
    with pytest.raises(IllegalTransition):
        check_transition(TASK_TRANSITIONS, TaskStatus.PENDING, TaskStatus.SUCCEEDED, what="t")
    with pytest.raises(IllegalTransition):
        check_transition(MERGE_TRANSITIONS, MergeStatus.MERGED, None, what="t")
    with pytest.raises(IllegalTransition):
        check_transition(ATTEMPT_TRANSITIONS, AttemptStatus.LOST, AttemptStatus.RUNNING, what="t")


async def _one_task(api: httpx.AsyncClient, repo: Path, **extra: object) -> uuid.UUID:
    session = await new_session(api, repo, [task("a", **extra), task("b", "a")])
    return (await task_ids(api, session["id"]))["a"]


async def _snapshot(db: AsyncSession, task_id: uuid.UUID) -> tuple[str, str | None, int, int]:
    row = await db.get(Task, task_id, populate_existing=True)
    assert row is not None
    entries = await db.scalar(select(func.count()).select_from(Event))
    outbox = await db.scalar(select(func.count()).select_from(Outbox))
    return row.status, row.merge_status, int(entries or 0), int(outbox or 0)


@pytest.mark.parametrize(
    "change",
    ["approve", "succeed", "queue", "retry", "merged", "abandon_merge", "resolved"],
)
async def test_an_illegal_change_raises_and_stores_nothing(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys, change: str
) -> None:
    """Task `a` is queued: none of these applies to it. Each raises before it touches the
    row, and the transaction, committed anyway, stores nothing."""
    task_id = await _one_task(api, git_repo)
    async with sessionmaker() as db:
        before = await _snapshot(db, task_id)
    assert before[:2] == (TaskStatus.QUEUED, None)
    async with sessionmaker() as db:
        locked = await lock_task(db, task_id)
        assert locked is not None
        row = locked.task
        with pytest.raises(IllegalTransition):
            if change == "approve":
                await task_state.approve(db, row, actor="t")
            elif change == "succeed":
                row.status = TaskStatus.FAILED  # a failed task cannot succeed
                await task_state.succeed(db, row, actor="t", source="s", data={})
            elif change == "queue":
                await task_state.queue(db, [task_state.Queueing(row, "x" * 40, {})])
            elif change == "retry":
                task_state.retry(db, row, actor="t", retry_at=None)
            elif change == "merged":
                task_state.merged(db, row, status=MergeStatus.MERGED, merge_commit=None, data={})
            elif change == "abandon_merge":
                task_state.abandon_merge(row)
            else:
                task_state.resolved(db, row, by="r", merge_commit=None)
        if change != "succeed":
            assert row.status == TaskStatus.QUEUED and row.merge_status is None
            assert row.attempt == 1
        db.expunge(row)
        await db.commit()
    async with sessionmaker() as db:
        assert await _snapshot(db, task_id) == before


async def test_work_that_is_merged_never_leaves_succeeded(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    task_id = await _one_task(api, git_repo)
    async with sessionmaker() as db:
        locked = await lock_task(db, task_id)
        assert locked is not None
        row = locked.task
        row.status, row.merge_status = TaskStatus.SUCCEEDED, MergeStatus.MERGED
        with pytest.raises(IllegalTransition, match="merged work"):
            task_state.reschedule(
                db, row, reason=None, retry_at=None, entry=task_state.Entry("task.requeued")
            )
        await db.rollback()


async def test_a_change_writes_its_entry_in_the_same_transaction(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    """Cancelling the queued task: the attempt ends, a cancel request goes to the outbox and
    the timeline entry is there before the commit; a rollback takes all of it back."""
    task_id = await _one_task(api, git_repo)
    async with sessionmaker() as db:
        before = await _snapshot(db, task_id)
        locked = await lock_task(db, task_id)
        assert locked is not None
        await task_state.cancel(db, locked.task, keys=keys, actor="token:alice")
        await db.flush()
        entry = await db.scalar(
            select(Event).where(Event.task_id == task_id).order_by(Event.id.desc()).limit(1)
        )
        assert entry is not None
        assert (entry.type, entry.actor, entry.data) == (
            "task.cancelled",
            "token:alice",
            {"from": "queued"},
        )
        attempt = await db.scalar(select(Attempt).where(Attempt.task_id == task_id))
        assert attempt is not None and attempt.status == AttemptStatus.CANCELLED
        assert (await _snapshot(db, task_id))[3] == before[3] + 1  # the cancel request
        await db.rollback()
    async with sessionmaker() as db:
        assert await _snapshot(db, task_id) == before


async def test_queueing_many_stores_each_in_one_pass_and_leaves_nothing_to_flush(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    """`queue` moves several pending tasks at once, set-based: each gets its own attempt
    (number, base, key), its `task.queued` entry and a fresh merge; the loaded rows already
    hold what was stored (nothing left dirty for a second write)."""
    session = await new_session(api, git_repo, [task("a"), task("b", "a"), task("c", "a")])
    ids = await task_ids(api, session["id"])
    bases = {"b": "b" * 40, "c": "c" * 40}
    async with sessionmaker() as db:
        rows = []
        for key in bases:
            locked = await lock_task(db, ids[key])
            assert locked is not None and locked.task.status == TaskStatus.PENDING
            rows.append(locked.task)
        rows[1].attempt = 2  # as if its first attempt had run: the next one is its third
        await db.flush()
        moves = [task_state.Queueing(row, bases[row.key], {"why": row.key}) for row in rows]
        keys = await task_state.queue(db, moves)
        assert len(set(keys)) == 2 and all(len(k) >= 32 for k in keys)
        assert not db.dirty
        assert [(r.status, r.attempt, r.base_commit) for r in rows] == [
            (TaskStatus.QUEUED, 1, "b" * 40),
            (TaskStatus.QUEUED, 3, "c" * 40),
        ]
        await db.commit()
    async with sessionmaker() as db:
        for row, key in zip(rows, keys, strict=True):
            stored = await db.get(Task, row.id)
            assert stored is not None
            assert (stored.status, stored.attempt, stored.base_commit, stored.queued_at) == (
                TaskStatus.QUEUED,
                row.attempt,
                bases[row.key],
                row.queued_at,
            )
            attempt = await db.scalar(
                select(Attempt).where(Attempt.task_id == row.id, Attempt.number == row.attempt)
            )
            assert attempt is not None
            assert (attempt.status, attempt.base_commit, attempt.event_key) == (
                AttemptStatus.QUEUED,
                bases[row.key],
                key,
            )
            entry = await db.scalar(
                select(Event).where(Event.task_id == row.id, Event.type == "task.queued")
            )
            assert entry is not None and (entry.attempt, entry.data) == (
                row.attempt,
                {"why": row.key},
            )


async def test_session_changes_are_checked_too(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    async with sessionmaker() as db:
        locked = await lock_task(db, (await task_ids(api, session["id"]))["a"])
        assert locked is not None
        locked.session.status = SessionStatus.CANCELLED
        with pytest.raises(IllegalTransition):
            session_state.pause(db, locked.session, actor="t")
        await db.rollback()


def test_every_open_session_takes_every_control_action() -> None:
    """Pause and cancel apply to every session that is not closed (the API answers them
    from any open state), and a paused one resumes to active or to review."""
    for status in set(SessionStatus) - CLOSED_SESSION_STATES:
        assert SessionStatus.CANCELLED in SESSION_TRANSITIONS[status], status
        if status != SessionStatus.SUSPENDED:
            assert SessionStatus.SUSPENDED in SESSION_TRANSITIONS[status], status
    assert SESSION_TRANSITIONS[SessionStatus.SUSPENDED] >= {
        SessionStatus.ACTIVE,
        SessionStatus.AWAITING_REVIEW,
    }


async def test_a_draft_session_is_paused_resumed_and_cancelled(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    sid = (await new_session(api, git_repo))["id"]  # no tasks: a draft
    paused = await api.post(f"/v1/sessions/{sid}/pause")
    assert (paused.status_code, paused.json()["status"]) == (200, "suspended")
    resumed = await api.post(f"/v1/sessions/{sid}/resume")
    assert (resumed.status_code, resumed.json()["status"]) == (200, "active")
    cancelled = await api.post(f"/v1/sessions/{sid}/cancel")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
