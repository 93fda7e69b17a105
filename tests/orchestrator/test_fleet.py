"""The fleet (`graph/fleet.py`, `graph/suspension.py`, `runtime/registry.py`): the adapters'
liveness keys mirrored into `workers` (an idle adapter stays live, one whose key expired goes
offline), what they announce shown by `GET /v1/workers`, and sessions suspended while a kind
their tasks need has no live adapter, resumed by themselves when one comes (never a
person's pause)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import select

from swarm_adapter import upkeep
from swarm_adapter.runners.shell import ShellRunner
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worker import Adapter
from swarm_common.messages import WorkerOnline, utcnow
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Event, Session, Worker
from swarm_orchestrator.graph import fleet
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.runtime.registry import Registry
from tests.orchestrator.helpers import apply, count_rows, new_session, task, task_states
from tests.waiting import wait_until_async


@contextlib.asynccontextmanager
async def advertising(adapter: Adapter) -> AsyncIterator[None]:
    """`adapter`'s liveness key kept fresh, as a running adapter keeps it."""
    loop = asyncio.create_task(upkeep.advertise(adapter))
    try:
        await wait_until_async(
            lambda: adapter.redis.exists(adapter.keys.worker(adapter.worker)),
            message="liveness key written",
        )
        yield
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


def _registry(state: AppState, grace_s: float = 0.0) -> Registry:
    return Registry(
        sessionmaker=state.sessionmaker, redis=state.redis, keys=state.keys, grace_s=grace_s
    )


async def _worker(state: AppState, name: str) -> Worker | None:
    async with state.sessionmaker() as db:
        return await db.get(Worker, name)


async def _session(state: AppState, session_id: str) -> Session:
    async with state.sessionmaker() as db:
        found = await db.scalar(select(Session).where(Session.id == uuid.UUID(session_id)))
        assert found is not None
        return found


async def test_the_registry_is_mirrored_and_an_expired_key_goes_offline(
    api: httpx.AsyncClient, state: AppState, adapter_settings: AdapterSettings, redis: Redis
) -> None:
    settings = adapter_settings.model_copy(update={"worker_ttl_s": 1.0, "models": ["m-1"]})
    adapter = Adapter(settings=settings, redis=redis, runner=ShellRunner())
    registry = _registry(state)
    async with advertising(adapter):
        await registry.pass_once()
        row = await _worker(state, "shell-test")
        assert row is not None  # never announced over the events stream: known from its key
        assert (row.status, row.agent, row.models, row.cli_version) == (
            "online",
            "shell",
            ["m-1"],
            None,
        )
        async with state.sessionmaker() as db:
            assert await fleet.live_agents(db) == {"shell"}
        shown = (await api.get("/v1/workers")).json()
        assert [(w["name"], w["alive"], w["models"], w["capabilities"]) for w in shown] == [
            ("shell-test", True, ["m-1"], [])
        ]

    async def offline() -> bool:  # the key expires (TTL 1 s), then a pass says so
        await registry.pass_once()
        row = await _worker(state, "shell-test")
        return row is not None and row.status == "offline"

    await wait_until_async(offline, timeout_s=fleet.OFFLINE_AFTER_S + 10, message="offline")
    async with state.sessionmaker() as db:
        assert await fleet.live_agents(db) == set()
        shell = (await fleet.kinds(db))["shell"]
    assert not shell.live and shell.last_seen_at is not None
    assert shell.missing_since().startswith("since ")


async def _entries(state: AppState, session_id: str, type: str) -> int:
    return await count_rows(
        state.sessionmaker, Event, Event.session_id == uuid.UUID(session_id), Event.type == type
    )


async def _status(state: AppState, session_id: str) -> tuple[str, str | None, Any]:
    found = await _session(state, session_id)
    return found.status, found.suspended_reason, found.suspended_kinds


async def test_a_session_waiting_for_a_kind_with_no_adapter_is_suspended_then_resumed(
    api: httpx.AsyncClient,
    state: AppState,
    git_repo: Path,
    adapter_settings: AdapterSettings,
    redis: Redis,
) -> None:
    session = await new_session(api, git_repo, [task("a")])  # shell, and no adapter
    registry = _registry(state, grace_s=0.0)
    await registry.pass_once()
    status, reason, kinds = await _status(state, session["id"])
    assert (status, reason, kinds) == ("suspended", "no live shell adapter ever", ["shell"])
    shown = (await api.get(f"/v1/sessions/{session['id']}")).json()
    assert shown["suspended_reason"] == "no live shell adapter ever"
    await registry.pass_once()  # nothing changed: said once
    assert await _entries(state, session["id"], "session.suspended") == 1

    adapter = Adapter(settings=adapter_settings, redis=redis, runner=ShellRunner())
    async with advertising(adapter):
        await registry.pass_once()
        assert await _status(state, session["id"]) == ("active", None, None)
        assert await _entries(state, session["id"], "session.resumed") == 1
        # It runs: the adapter takes the task that waited in its stream.
        assert await state.background.relay.publish_batch() == 1
        assert await adapter.process_available() == 1


async def test_a_persons_pause_never_resumes_by_itself(
    api: httpx.AsyncClient,
    state: AppState,
    git_repo: Path,
    adapter_settings: AdapterSettings,
    redis: Redis,
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    registry = _registry(state, grace_s=0.0)
    await registry.pass_once()
    assert (await _status(state, session["id"]))[0] == "suspended"
    paused = await api.post(f"/v1/sessions/{session['id']}/pause")
    assert paused.status_code == 200, paused.text
    assert await _status(state, session["id"]) == ("suspended", None, None)

    adapter = Adapter(settings=adapter_settings, redis=redis, runner=ShellRunner())
    async with advertising(adapter):
        await registry.pass_once()
        assert (await _status(state, session["id"]))[0] == "suspended"
        resumed = await api.post(f"/v1/sessions/{session['id']}/resume")
        assert resumed.status_code == 200, resumed.text
        assert (await _status(state, session["id"]))[0] == "active"
        await registry.pass_once()  # the kind is live: it stays active
        assert (await _status(state, session["id"]))[0] == "active"


async def test_the_grace_period_holds_a_suspension_back(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    await _registry(state, grace_s=3600).pass_once()
    assert await _status(state, session["id"]) == ("active", None, None)


async def test_an_auto_task_queued_on_a_kind_that_went_away_is_routed_elsewhere(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    a_minute_ago = utcnow() - timedelta(minutes=1)
    for kind, at in (("codex", a_minute_ago), ("claude", utcnow())):
        online = WorkerOnline(worker=f"{kind}-1", agent=kind, host="h", pid=1, concurrency=1, at=at)
        assert await apply(state.sessionmaker, state.keys, online) == Outcome.APPLIED
    session = await new_session(
        api, git_repo, [task("api", prompt="Add it", agent="auto", role="backend")]
    )
    assert await task_states(api, session["id"]) == {"api": ("queued", 1)}
    await _registry(state, grace_s=0.0).pass_once()  # codex's key is gone: offline
    assert (await _worker(state, "codex-1")).status == "offline"  # type: ignore[union-attr]
    assert await task_states(api, session["id"]) == {"api": ("queued", 2)}
    [shown] = (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()
    assert shown["agent"] == "claude"
    assert await _entries(state, session["id"], "task.rerouting") == 1
    assert await _status(state, session["id"]) == ("active", None, None)  # auto: no suspension
