"""`GET /v1/workers` (`api/routes/workers.py`): a token without a tenant sees every adapter
with its host and pid; a tenant's token sees only the adapters running its tenant's tasks,
only those tasks, and neither host nor pid."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import TaskStarted, WorkerOnline
from swarm_common.streams import Keys
from swarm_orchestrator.db.models import Session
from swarm_orchestrator.graph.reports import Outcome
from tests.orchestrator.helpers import apply, new_session, task, task_ids, tenant_client

SM = async_sessionmaker[AsyncSession]


async def _running_task_of(
    api: httpx.AsyncClient, repo: Path, sessionmaker: SM, keys: Keys, tenant: str, worker: str
) -> None:
    """A session of `tenant` (stamped in the database: which repositories a tenant's token
    may name is not this test's concern) whose task `tenant[0]` runs on `worker`."""
    key = tenant[0]
    session = await new_session(api, repo, [task(key), task(f"{key}2")])
    async with sessionmaker() as db, db.begin():
        await db.execute(
            update(Session).where(Session.id == uuid.UUID(session["id"])).values(tenant=tenant)
        )
    started = TaskStarted(
        session_id=uuid.UUID(session["id"]),
        task_id=(await task_ids(api, session["id"]))[key],
        attempt=1,
        worker=worker,
        branch="b",
        base_commit="c",
    )
    assert await apply(sessionmaker, keys, started) == Outcome.APPLIED


def _seen(workers: list[dict[str, Any]]) -> list[tuple[str, str, int | None, list[str]]]:
    """Name, host, pid and the keys of the tasks it runs, of each worker."""
    return [
        (w["name"], w["host"], w["pid"], [r["task_key"] for r in w["running"]]) for w in workers
    ]


async def test_a_tenant_sees_only_the_workers_running_its_tasks_without_host_or_pid(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    acme = await tenant_client(api, "acme", role="operator", name="acme-op")
    globex = await tenant_client(api, "globex", role="operator", name="globex-op")
    initech = await tenant_client(api, "initech", role="viewer", name="initech-viewer")
    async with acme, globex, initech:
        for n, name in enumerate(("w-acme", "w-globex", "w-idle"), start=1):
            online = WorkerOnline(
                worker=name, agent="shell", host=f"{name}.internal", pid=100 + n, concurrency=2
            )
            assert await apply(sessionmaker, keys, online) == Outcome.APPLIED
        await _running_task_of(api, git_repo, sessionmaker, keys, "acme", "w-acme")
        await _running_task_of(api, git_repo, sessionmaker, keys, "globex", "w-globex")

        everything = (await api.get("/v1/workers")).json()
        assert _seen(everything) == [
            ("w-acme", "w-acme.internal", 101, ["a"]),
            ("w-globex", "w-globex.internal", 102, ["g"]),
            ("w-idle", "w-idle.internal", 103, []),
        ]
        assert _seen((await acme.get("/v1/workers")).json()) == [("w-acme", "", None, ["a"])]
        assert _seen((await globex.get("/v1/workers")).json()) == [("w-globex", "", None, ["g"])]
        assert (await initech.get("/v1/workers")).json() == []
