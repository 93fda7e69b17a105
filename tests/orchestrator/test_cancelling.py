"""Cancelling a session (`graph/cancelling.py`, `graph/control.py`): the answer cancels
at once what could still start or merge and leaves the rest, which can no longer start, to
the background; that goes on in chunks, durably (a crash leaves it to the next loop) and
safely with two loops at once (no task cancelled twice, no deadlock); a cancelled session's
held task messages never go out."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import TaskFailed, TaskStarted
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.advisory import try_xact_lock
from swarm_orchestrator.db.engine import make_engine, make_sessionmaker
from swarm_orchestrator.db.models import Attempt, Event, Outbox, Session, Task
from swarm_orchestrator.graph import cancelling
from swarm_orchestrator.graph.locking import lock_session
from swarm_orchestrator.graph.reports import Outcome
from tests.orchestrator.helpers import (
    apply,
    live_worker,
    new_session,
    outcome_event,
    succeed_attempt,
    task,
    task_ids,
)

SM = async_sessionmaker[AsyncSession]
ACTOR = "token:bootstrap"


@pytest.fixture
def in_answer(monkeypatch: pytest.MonkeyPatch) -> int:
    """The answer cancels nothing beyond what must go at once: the background does the
    rest (in production it also takes the first `IN_ANSWER`)."""
    monkeypatch.setattr(cancelling, "IN_ANSWER", 0)
    return 0


@pytest.fixture
async def other_sessionmaker(database_url: str) -> AsyncIterator[SM]:
    """A second process's connections to the same database."""
    engine = make_engine(database_url, pool_size=2)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def counts(api: httpx.AsyncClient, session_id: str) -> dict[str, int]:
    return dict((await api.get(f"/v1/sessions/{session_id}")).json()["counts"])


async def events(sessionmaker: SM, session_id: str, type: str) -> list[Event]:
    async with sessionmaker() as db:
        rows = await db.scalars(
            select(Event)
            .where(Event.session_id == uuid.UUID(session_id), Event.type == type)
            .order_by(Event.id)
        )
        return list(rows.all())


async def cancelling_by(sessionmaker: SM, session_id: str) -> str | None:
    async with sessionmaker() as db:
        found: str | None = await db.scalar(
            select(Session.cancelling_by).where(Session.id == uuid.UUID(session_id))
        )
        return found


async def drain(sessionmaker: SM, keys: Keys, session_id: str, chunk: int) -> int:
    """Run background passes until the session's cancel is complete; the tasks they
    cancelled."""
    done = 0
    while await cancelling_by(sessionmaker, session_id) is not None:
        done += await cancelling.cancel_pending(sessionmaker, keys=keys, chunk=chunk)
        await asyncio.sleep(0)  # the other loop's turn, when there is one
    return done


async def assert_cancelled_once(sessionmaker: SM, session_id: str, tasks: int) -> None:
    """Every task cancelled exactly once (one entry each), every queued attempt ended
    cancelled, and the cancel completed once."""
    entries = await events(sessionmaker, session_id, "task.cancelled")
    assert Counter(Counter(e.task_id for e in entries).values()) == {1: tasks}
    async with sessionmaker() as db:
        states = Counter(
            (
                await db.scalars(
                    select(Attempt.status)
                    .join(Task, Task.id == Attempt.task_id)
                    .where(Task.session_id == uuid.UUID(session_id))
                )
            ).all()
        )
    assert states == {"cancelled": tasks}
    assert len(await events(sessionmaker, session_id, "session.cancel_completed")) == 1
    assert len(await events(sessionmaker, session_id, "session.finished")) == 1
    assert await cancelling_by(sessionmaker, session_id) is None


async def independent_session(api: httpx.AsyncClient, repo: Path, n: int) -> str:
    session = await new_session(api, repo, [task(f"t{i:03}") for i in range(n)])
    assert session["counts"] == {"queued": n}
    return str(session["id"])


async def test_a_small_session_is_cancelled_in_full_before_the_answer(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    sid = await independent_session(api, git_repo, 5)
    answer = await api.post(f"/v1/sessions/{sid}/cancel")
    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["counts"]) == ("cancelled", {"cancelled": 5})
    assert answer.json()["done"] is True
    [entry] = await events(sessionmaker, sid, "session.cancelled")
    assert entry.data == {"tasks_cancelled": 5}
    assert await cancelling_by(sessionmaker, sid) is None
    assert await events(sessionmaker, sid, "session.cancel_completed") == []


async def test_the_answer_cancels_what_could_still_start_or_merge_and_leaves_the_rest(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    state: AppState,
    keys: Keys,
    redis: Redis,
    in_answer: int,
) -> None:
    graph = [
        task("published", priority=10),  # its message goes out first
        task("running"),
        task("merging"),
        *(task(f"held{i:02}") for i in range(20)),
        task("child", "published"),  # pending
    ]
    session = await new_session(api, git_repo, graph)
    sid = session["id"]
    ids = await task_ids(api, sid)
    assert await state.background.relay.publish_batch() == 1  # no adapter: the headroom
    assert await redis.xlen(keys.tasks("shell")) == 1
    started = outcome_event(TaskStarted, sid, ids["running"], branch="x", base_commit="y")
    assert await apply(sessionmaker, keys, started) == Outcome.APPLIED
    await succeed_attempt(sessionmaker, keys, sid, ids["merging"], commit="c0ffee")

    answer = await api.post(f"/v1/sessions/{sid}/cancel")

    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "cancelled" and body["done"] is False
    assert body["counts"] == {"cancelled": 2, "succeeded": 1, "queued": 20, "pending": 1}
    async with sessionmaker() as db:
        merging = await db.get(Task, ids["merging"])
        cancels = (await db.scalars(select(Outbox.payload).where(Outbox.kind == "cancel"))).all()
    assert merging is not None and merging.merge_status == "abandoned"
    stopped = {uuid.UUID(c["request"]["task_id"]) for c in cancels}
    assert stopped == {ids["published"], ids["running"]}  # the two that may run
    [entry] = await events(sessionmaker, sid, "session.cancelled")
    assert entry.data == {"tasks_cancelled": 3, "remaining": 21}
    assert await cancelling_by(sessionmaker, sid) == ACTOR
    assert body["cancelling_by"] == ACTOR  # the API and the dashboard say it goes on
    assert state.background.cancel_wake.is_set()

    # The held messages never go out, even with room for them, nor after the rest ends.
    await live_worker(sessionmaker, slots=50)
    await state.background.relay.publish_batch()
    assert await redis.xlen(keys.tasks("shell")) == 1
    assert await state.background.cancel_once() == 21
    assert await state.background.cancel_once() == 0
    async with sessionmaker() as db:  # nobody has the withheld ones: nobody is asked to stop
        asked = (await db.scalars(select(Outbox.payload).where(Outbox.kind == "cancel"))).all()
    assert sorted(c["request"]["task_id"] for c in asked) == sorted(str(i) for i in stopped)
    await state.background.relay.publish_batch()
    assert await redis.xlen(keys.tasks("shell")) == 1
    assert await counts(api, sid) == {"cancelled": 23, "succeeded": 1}
    [completed] = await events(sessionmaker, sid, "session.cancel_completed")
    assert (completed.actor, completed.data) == (ACTOR, {"tasks_cancelled": 23})
    after = (await api.get(f"/v1/sessions/{sid}")).json()
    assert (after["done"], after["cancelling_by"]) == (True, None)


async def test_a_task_whose_current_message_went_out_is_cancelled_at_once(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    state: AppState,
    keys: Keys,
    in_answer: int,
) -> None:
    """What counts is the current attempt's message: one of an older attempt still held
    (the dispatcher drops those lazily) does not make the task safe to leave."""
    session = await new_session(api, git_repo, [task("out", priority=10), task("held")])
    sid, ids = session["id"], await task_ids(api, session["id"])
    failed = outcome_event(TaskFailed, sid, ids["out"], reason="exit_code", exit_code=1)
    assert await apply(sessionmaker, keys, failed) == Outcome.APPLIED
    assert (await api.post(f"/v1/tasks/{ids['out']}/retry")).status_code == 200  # attempt 2
    assert await state.background.relay.publish_batch() == 1  # attempt 2's message
    async with sessionmaker() as db, db.begin():  # attempt 1's, not dropped yet
        stale = Outbox(kind="xadd", target=keys.tasks("shell"), payload={}, publish_count=0)
        stale.task_id, stale.attempt, stale.session_id = ids["out"], 1, uuid.UUID(sid)
        stale.priority = 10
        db.add(stale)
    answer = await api.post(f"/v1/sessions/{sid}/cancel")
    assert answer.json()["counts"] == {"cancelled": 1, "queued": 1}
    async with sessionmaker() as db:
        out = await db.get(Task, ids["out"])
    assert out is not None and (out.status, out.attempt) == ("cancelled", 2)


async def test_the_background_cancels_in_chunks_and_shows_what_is_left(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys, in_answer: int
) -> None:
    sid = await independent_session(api, git_repo, 25)
    assert (await api.post(f"/v1/sessions/{sid}/cancel")).json()["counts"] == {"queued": 25}
    steps = [
        await cancelling.cancel_step(sessionmaker, uuid.UUID(sid), keys=keys, chunk=10)
        for _ in range(3)
    ]
    assert steps == [10, 10, 5]
    assert await counts(api, sid) == {"cancelled": 25}
    assert await cancelling.cancel_step(sessionmaker, uuid.UUID(sid), keys=keys) == 0
    await assert_cancelled_once(sessionmaker, sid, 25)
    again = await api.post(f"/v1/sessions/{sid}/cancel")  # changes nothing
    assert (again.status_code, again.json()["counts"]) == (200, {"cancelled": 25})


async def test_a_cancel_cut_short_is_finished_by_the_next_process(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    other_sessionmaker: SM,
    keys: Keys,
    in_answer: int,
) -> None:
    sid = await independent_session(api, git_repo, 25)
    await api.post(f"/v1/sessions/{sid}/cancel")
    assert await cancelling.cancel_step(sessionmaker, uuid.UUID(sid), keys=keys, chunk=10) == 10

    # The process dies in the middle of the next chunk: its transaction never commits.
    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        async with sessionmaker() as db, db.begin():
            locked = await lock_session(db, uuid.UUID(sid))
            assert locked is not None
            changed = await cancelling.cancel_chunk(db, locked, keys=keys, actor=ACTOR, limit=10)
            assert changed == 10
            await db.flush()
            raise Crash
    assert await counts(api, sid) == {"cancelled": 10, "queued": 15}
    assert await cancelling_by(sessionmaker, sid) == ACTOR

    # Another process's loop finds the session by its mark and finishes the cancel.
    assert await drain(other_sessionmaker, keys, sid, chunk=10) == 15
    assert await counts(api, sid) == {"cancelled": 25}
    await assert_cancelled_once(sessionmaker, sid, 25)


async def test_two_loops_at_once_cancel_each_task_once(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    other_sessionmaker: SM,
    keys: Keys,
    in_answer: int,
) -> None:
    sid = await independent_session(api, git_repo, 40)
    await api.post(f"/v1/sessions/{sid}/cancel")
    done = await asyncio.wait_for(
        asyncio.gather(
            drain(sessionmaker, keys, sid, chunk=3), drain(other_sessionmaker, keys, sid, chunk=3)
        ),
        timeout=60,
    )
    assert sum(done) == 40
    assert await counts(api, sid) == {"cancelled": 40}
    await assert_cancelled_once(sessionmaker, sid, 40)


async def test_a_session_another_replica_is_cancelling_is_left_to_it(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    other_sessionmaker: SM,
    keys: Keys,
    in_answer: int,
) -> None:
    sid = await independent_session(api, git_repo, 5)
    await api.post(f"/v1/sessions/{sid}/cancel")
    async with other_sessionmaker() as db, db.begin():
        assert await try_xact_lock(db, f"cancel:{sid}")  # the other replica is at work
        assert await cancelling.cancel_pending(sessionmaker, keys=keys) == 0
        assert await counts(api, sid) == {"queued": 5}
    assert await cancelling.cancel_pending(sessionmaker, keys=keys) == 5
    await assert_cancelled_once(sessionmaker, sid, 5)


async def test_a_cancelling_session_takes_no_new_task_and_is_not_finished(
    api: httpx.AsyncClient, git_repo: Path, in_answer: int
) -> None:
    sid = await independent_session(api, git_repo, 3)
    await api.post(f"/v1/sessions/{sid}/cancel")
    cases: list[tuple[str, Any]] = [
        (f"/v1/sessions/{sid}/tasks", [task("late")]),
        (f"/v1/sessions/{sid}/finish", None),
    ]
    for path, body in cases:
        refused = await api.post(path, json=body)
        assert (refused.status_code, refused.json()["code"]) == (409, "session_closed")
