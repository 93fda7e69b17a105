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
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.jsontext import CLIPPED
from swarm_orchestrator.api.convert import MAX_SHOWN_DEPTH
from swarm_orchestrator.db.models import Task
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
