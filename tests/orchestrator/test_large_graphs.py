"""A session at the limits (`graph/sessions.py`, `api/convert.py`): adding its graph and
listing its tasks leave the event loop free for everyone else's requests, and what was
stored before the limits existed (a spec or a result nested hundreds of levels deep) still
reads without a 500."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from swarm_common.jsontext import CLIPPED
from swarm_common.streams import Keys
from swarm_orchestrator.api.convert import MAX_SHOWN_DEPTH
from swarm_orchestrator.db.models import Task
from swarm_orchestrator.graph import scheduler
from tests.orchestrator.helpers import new_session, task


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "string"}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def depth_of(value: Any) -> int:
    level, depth = [value], 0
    while level:
        depth += 1
        level = [
            c
            for v in level
            for c in (v.values() if isinstance(v, dict) else v)
            if isinstance(c, dict | list)
        ]
    return depth


async def test_a_spec_and_a_result_stored_too_deep_still_read(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Before bodies had a depth limit, a 255-level `output_schema` was stored and its task
    answered 500 for ever; an agent's result can be as deep."""
    session = await new_session(api, git_repo, tasks=[task("a")])
    listed = (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()
    task_id = uuid.UUID(listed[0]["id"])
    async with sessionmaker() as db:
        spec = {**(await db.get(Task, task_id)).spec, "output_schema": nested(300)}  # type: ignore[union-attr]
        await db.execute(
            update(Task).where(Task.id == task_id).values(spec=spec, result=nested(300))
        )
        await db.commit()
    detail = await api.get(f"/v1/tasks/{task_id}")
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert depth_of(body["spec"]) == MAX_SHOWN_DEPTH
    assert depth_of(body["result"]) == MAX_SHOWN_DEPTH
    assert CLIPPED in detail.text
    assert body["spec"]["prompt"] == "true"  # only what is too deep is cut
    listed = await api.get(f"/v1/sessions/{session['id']}/tasks")
    assert listed.status_code == 200
    assert depth_of(listed.json()[0]["result"]) == MAX_SHOWN_DEPTH


async def served_beside(
    api: httpx.AsyncClient, request: Awaitable[httpx.Response]
) -> tuple[httpx.Response, float, list[float]]:
    """Run `request` and, while it is in progress, GET /v1/whoami one after another on the
    same event loop. Returns its response, its time, and the time each whoami waited for
    the loop (from the previous answer to its own)."""
    # What earlier tests left in this process is no part of the server's work: frozen, the
    # garbage collector's full passes walk only what this request makes (as in a server).
    gc.collect()
    gc.freeze()
    try:
        heavy = asyncio.ensure_future(request)
        started = last = time.perf_counter()
        waits: list[float] = []
        while not heavy.done():
            await asyncio.sleep(0)  # a turn for the heavy request's next step
            assert (await api.get("/v1/whoami")).status_code == 200
            now = time.perf_counter()
            waits.append(now - last)
            last = now
        return await heavy, time.perf_counter() - started, waits
    finally:
        gc.unfreeze()


async def test_a_large_session_is_listed_while_whoami_keeps_answering(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    """5000 tasks and ~50,000 edges (the per-request edge limit): reading and converting them
    runs in slices and a worker thread, so whoami answers all along. Before, one step of
    the listing held the loop for most of its time."""
    session = await new_session(api, git_repo)
    graph = [task(f"t{i}", *(f"t{j}" for j in range(max(0, i - 10), i))) for i in range(5000)]
    added, _, _ = await served_beside(
        api, api.post(f"/v1/sessions/{session['id']}/tasks", json=graph)
    )
    assert added.status_code == 201, added.text[:300]
    assert len(added.json()) == 5000

    listed, took, waits = await served_beside(api, api.get(f"/v1/sessions/{session['id']}/tasks"))
    assert listed.status_code == 200
    tasks = listed.json()
    assert {t["key"] for t in tasks} == {t["key"] for t in graph}
    assert sum(len(t["depends_on"]) for t in tasks) == 10 * 5000 - 55
    assert len(waits) >= 5, (took, waits)
    assert max(waits) < took / 3, (took, sorted(waits)[-5:])


def _plan_nodes(plan: Any) -> list[dict[str, Any]]:
    """Every node of an `EXPLAIN (FORMAT JSON)` plan."""
    todo, nodes = [plan[0]["Plan"]], []
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", ()))
    return nodes


async def test_a_big_sessions_next_ready_tasks_come_from_an_index_not_a_sort_of_all(
    api: httpx.AsyncClient,
    git_repo: Path,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
) -> None:
    """A sweep takes a session's ready tasks 500 at a time, in priority, chain and age
    order. Before `ix_tasks_pending_order`, each pass sorted every pending task of the
    session (whole rows, on disk past a few thousand) to take 500."""
    await new_session(api, git_repo, tasks=[task(f"t{i}", agent="noop") for i in range(2000)])
    statements: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FOR UPDATE OF tasks" in statement and "tasks.priority DESC" in statement:
            statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        queued = await scheduler.sweep(sessionmaker, keys=keys)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert queued == 2000 - scheduler.QUEUE_IN_REQUEST  # the request queued the first 500
    assert len(statements) == queued // scheduler.SWEEP_CHUNK + 1  # the last finds none
    statement, parameters = statements[0]
    async with engine.connect() as conn:
        explained = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        nodes = _plan_nodes(explained.scalar_one())
    assert "ix_tasks_pending_order" in {n.get("Index Name") for n in nodes}, nodes
    assert not [n for n in nodes if n["Node Type"] == "Sort"], nodes
