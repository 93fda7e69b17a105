"""What the dashboard and the CLI read and do: the timeline in stream order, progress and
spend, approval, pause and resume, the workers' running tasks, tasks by id."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from swarm_common.messages import TaskStarted, TaskSucceeded, WorkerOnline
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db import timeline
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
from tests.waiting import wait_until_async

SM = async_sessionmaker[AsyncSession]

INSERT = text(
    "INSERT INTO events (session_id, type, actor, data, created_at) "
    "VALUES (:sid, 'test.entry', 'test', CAST(:data AS jsonb), now()) RETURNING id"
)


async def _insert(conn: AsyncSession, sid: str, n: int) -> int:
    return int((await conn.execute(INSERT, {"sid": sid, "data": f'{{"n": {n}}}'})).scalar_one())


async def test_an_entry_committed_out_of_id_order_is_not_skipped(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    """Entry 6 commits after entry 7: a reader going by id alone would pass 6 and never see
    it; the stream order waits for 6's transaction and then gives both."""
    sid = (await new_session(api, git_repo, []))["id"]

    async def settled(after: timeline.Cursor = timeline.START) -> timeline.Batch | None:
        # Another test's transaction, older than ours, may hold entries back a moment.
        async with sessionmaker() as db:
            batch = await timeline.read(db, after=after, session_id=uuid.UUID(sid))
        return None if batch.held_back else batch

    # The session's own entries first: the cursor starts after them.
    start = (await wait_until_async(settled, timeout_s=30, message="session created")).cursor
    async with sessionmaker() as slow, sessionmaker() as fast:
        first = await _insert(slow, sid, 1)  # older transaction, smaller id, still open
        second = await _insert(fast, sid, 2)
        await fast.commit()
        assert second > first
        async with sessionmaker() as db:
            batch = await timeline.read(db, after=start, session_id=uuid.UUID(sid))
        # 2 is committed, but 1's transaction is older and open: 2 waits, and says so.
        assert [e.id for e in batch.events] == []
        assert batch.held_back
        assert batch.cursor == start
        async with sessionmaker() as db:  # the JSON pages follow the same rule
            assert second not in [e.id for e in await timeline.page(db, session_id=uuid.UUID(sid))]
        await slow.commit()

    batch = await wait_until_async(
        lambda: settled(start), timeout_s=30, message="entries 1 and 2 settled"
    )
    assert [e.id for e in batch.events] == [first, second]
    async with sessionmaker() as db:
        # Resuming after entry `first` gives `second` only.
        cursor, min_id = await timeline.cursor_after(db, first)
        again = await timeline.read(db, after=cursor, min_id=min_id, session_id=uuid.UUID(sid))
        assert [e.id for e in again.events] == [second]


async def test_concurrent_writers_and_a_resuming_reader_see_each_entry_once(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, engine: AsyncEngine
) -> None:
    """Eight writers commit entries in random interleavings while a reader takes small
    batches, resuming each time from the last entry id it saw, as a reconnecting SSE client
    does: it ends up with every entry, each once."""
    sid = (await new_session(api, git_repo, []))["id"]
    session_id = uuid.UUID(sid)
    per_writer = 40

    async def writer(w: int) -> None:
        for i in range(per_writer):
            async with sessionmaker() as db:
                await _insert(db, sid, w * 1000 + i)
                if i % 3 == 0:
                    await _insert(db, sid, w * 1000 + i + 500)
                await asyncio.sleep(0)  # let another writer take an id meanwhile
                await db.commit()

    seen: list[int] = []
    last = 0
    writers = asyncio.gather(*(writer(w) for w in range(8)))
    while True:
        async with sessionmaker() as db:
            cursor, min_id = await timeline.cursor_after(db, last)
            batch = await timeline.read(
                db, after=cursor, min_id=min_id, session_id=session_id, limit=7
            )
        seen.extend(e.id for e in batch.events)
        if batch.events:
            last = batch.events[-1].id
        if writers.done() and not batch.events and not batch.held_back:
            break
        await asyncio.sleep(0)
    await writers
    async with engine.connect() as conn:
        every = set(
            (
                await conn.execute(
                    text("SELECT id FROM events WHERE session_id = :sid"), {"sid": sid}
                )
            ).scalars()
        )
    assert len(seen) == len(set(seen)), "an entry came twice"
    assert set(seen) == every
    assert len(every) >= 8 * per_writer


async def test_approval_progress_and_spend(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    keys: Keys,
    state: AppState,
    workspace: Path,
) -> None:
    session = await new_session(api, git_repo, [task("a", requires_approval=True), task("b", "a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    work = mirror_commit(workspace, session, {"a.txt": "a"})
    online = WorkerOnline(worker="w-test", agent="shell", host="h", pid=1, concurrency=1)
    assert await apply(sessionmaker, keys, online) == Outcome.APPLIED
    started = outcome_event(TaskStarted, sid, ids["a"], branch="x", base_commit="y")
    assert await apply(sessionmaker, keys, started) == Outcome.APPLIED
    [worker] = (await api.get("/v1/workers")).json()
    assert [(r["task_key"], r["attempt"]) for r in worker["running"]] == [("a", 1)]
    assert worker["last_heartbeat_at"] is not None
    done = outcome_event(
        TaskSucceeded,
        sid,
        ids["a"],
        exit_code=0,
        commit=work,
        changed_files=["a.txt"],
        usage={"input": 1000, "cached_input": 100, "output": 250},
        cost_usd=0.5,
    )
    assert await apply(sessionmaker, keys, done) == Outcome.APPLIED
    # It waits for a person: not merged, its dependent not queued, the session not done.
    assert await task_states(api, sid) == {"a": ("awaiting_approval", 1), "b": ("pending", 0)}
    assert await state.background.merge_once() == 0
    assert (await api.get("/v1/workers")).json()[0]["running"] == []
    progress = (await api.get(f"/v1/sessions/{sid}/progress")).json()
    assert (progress["total"], progress["ended"], progress["percent"]) == (2, 0, 0.0)
    assert progress["usage"] == {"input": 1000, "cached_input": 100, "output": 250}
    assert (progress["tokens"], progress["cost_usd"]) == (1250, 0.0)  # shell costs nothing
    assert progress["eta_s"] is None  # no task has ended: nothing to estimate from
    [a] = (await api.get(f"/v1/sessions/{sid}/tasks", params={"id": str(ids["a"])})).json()
    assert (a["key"], a["tokens"], a["cost_usd"]) == ("a", 1250, 0.0)

    approved = await api.post(f"/v1/tasks/{ids['a']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "succeeded"
    again = await api.post(f"/v1/tasks/{ids['a']}/approve")  # delivered twice: no change
    assert again.status_code == 200
    assert await state.background.merge_once() == 1
    assert await task_states(api, sid) == {"a": ("succeeded", 1), "b": ("queued", 1)}
    types = [e["type"] for e in (await api.get(f"/v1/tasks/{ids['a']}/events")).json()]
    assert types.count("task.approved") == 1
    assert types.index("task.awaiting_approval") < types.index("task.approved")
    entry = next(
        e
        for e in (await api.get(f"/v1/tasks/{ids['a']}/events")).json()
        if e["type"] == "task.approved"
    )
    assert entry["actor"] == "token:bootstrap"
    progress = (await api.get(f"/v1/sessions/{sid}/progress")).json()
    assert (progress["ended"], progress["percent"]) == (1, 50.0)
    entries = (await api.get(f"/v1/sessions/{sid}/events")).json()
    assert progress["last_event_id"] == entries[-1]["id"]  # stream after it: nothing missed
    assert progress["eta_s"] is not None and progress["eta_s"] >= 0
    refused = await api.post(f"/v1/tasks/{ids['b']}/approve")
    assert refused.status_code == 409
    assert refused.json()["code"] == "not_awaiting_approval"


async def test_a_paused_session_queues_nothing_until_resumed(
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
    paused = await api.post(f"/v1/sessions/{sid}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "suspended"
    assert (await api.post(f"/v1/sessions/{sid}/pause")).json()["status"] == "suspended"
    # a was queued before the pause and finishes; b, now ready, waits.
    work = mirror_commit(workspace, session, {"a.txt": "a"})
    done = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, commit=work)
    assert await apply(sessionmaker, keys, done) == Outcome.APPLIED
    assert await state.background.merge_once() == 1
    assert await task_states(api, sid) == {"a": ("succeeded", 1), "b": ("pending", 0)}
    resumed = await api.post(f"/v1/sessions/{sid}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    assert await task_states(api, sid) == {"a": ("succeeded", 1), "b": ("queued", 1)}
    assert (await api.post(f"/v1/sessions/{sid}/resume")).json()["status"] == "active"
    types = [e["type"] for e in (await api.get(f"/v1/sessions/{sid}/events")).json()]
    assert types.count("session.paused") == 1 and types.count("session.resumed") == 1
    await api.post(f"/v1/sessions/{sid}/cancel")
    closed = await api.post(f"/v1/sessions/{sid}/pause")
    assert closed.status_code == 409 and closed.json()["code"] == "session_closed"


async def test_tasks_by_id_is_bounded_and_checked(api: httpx.AsyncClient, git_repo: Path) -> None:
    sid = (await new_session(api, git_repo, [task("a"), task("b")]))["id"]
    ids = await task_ids(api, sid)
    url = f"/v1/sessions/{sid}/tasks"
    both = (await api.get(url, params=[("id", str(ids["a"])), ("id", str(ids["b"]))])).json()
    assert sorted(t["key"] for t in both) == ["a", "b"]
    assert (await api.get(url, params={"id": str(uuid.uuid4())})).json() == []
    assert (await api.get(url, params={"id": "not-a-uuid"})).status_code == 422
    many = [("id", str(uuid.uuid4())) for _ in range(501)]
    assert (await api.get(url, params=many)).status_code == 422
