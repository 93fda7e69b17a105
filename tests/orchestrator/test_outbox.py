"""The outbox relay: rows published in order, once per relay, even with relays racing; and a
row published twice (a crash before it was marked sent) still runs its task once."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_adapter.worker import Adapter
from swarm_common.messages import TaskMessage
from swarm_common.streams import ADAPTERS_GROUP, Keys, decode
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Outbox
from swarm_orchestrator.runtime.relay import Relay
from tests.orchestrator.helpers import count_rows, live_worker, new_session, task, task_ids
from tests.waiting import wait_until_async

SM = async_sessionmaker[AsyncSession]


async def test_rows_are_published_in_order_and_marked_sent(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    await live_worker(sessionmaker, slots=2)  # and the headroom: room for three
    session = await new_session(api, git_repo, [task(f"t{i}", priority=i) for i in range(3)])
    assert await state.background.relay.publish_batch() == 3
    assert await state.background.relay.publish_batch() == 0
    entries = await redis.xrange(keys.tasks("shell"))
    messages = [decode(fields).message for _, fields in entries]
    assert all(isinstance(m, TaskMessage) for m in messages)
    assert [m.task_key for m in messages] == ["t2", "t1", "t0"]  # higher priority first
    first = messages[0]
    assert isinstance(first, TaskMessage)
    assert first.repo == f"repos/{session['id']}.git"
    assert first.base_commit == session["base_commit"]
    assert first.branch == f"swarm/{session['id']}/task/t2"
    groups = await redis.xinfo_groups(keys.tasks("shell"))
    assert [g["name"] for g in groups] == [ADAPTERS_GROUP.encode()]
    async with sessionmaker() as db:
        rows = (await db.scalars(select(Outbox))).all()
    assert all(r.sent_at is not None and r.publish_count == 1 for r in rows)


async def test_racing_relays_publish_each_row_once(
    api: httpx.AsyncClient,
    git_repo: Path,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    await live_worker(sessionmaker, slots=60)
    await new_session(api, git_repo, [task(f"t{i}") for i in range(60)])
    relays = [Relay(sessionmaker=sessionmaker, redis=redis, keys=keys, batch=7) for _ in range(3)]

    async def drain(relay: Relay) -> int:
        total = 0
        while published := await relay.publish_batch():
            total += published
        return total

    counts = await asyncio.gather(*(drain(r) for r in relays))
    assert sum(counts) == 60
    assert await redis.xlen(keys.tasks("shell")) == 60


async def test_the_relay_loop_drains_past_its_batch_without_waiting_a_poll(
    api: httpx.AsyncClient,
    git_repo: Path,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    """A pass cut short by the batch limit is followed by the next at once; the poll (an
    hour here) is what the loop waits only once nothing more is ready."""
    await live_worker(sessionmaker, slots=20)
    await new_session(api, git_repo, [task(f"t{i}") for i in range(20)])
    relay = Relay(sessionmaker=sessionmaker, redis=redis, keys=keys, batch=3)
    stop, wake = asyncio.Event(), asyncio.Event()
    loop = asyncio.create_task(relay.run(stop=stop, wake=wake, poll_s=3600, retention_s=3600))

    async def published(n: int) -> bool:
        return await redis.xlen(keys.tasks("shell")) >= n

    try:
        await wait_until_async(lambda: published(20), timeout_s=30, message="20 published")
        # Drained: the loop waits out its poll now, and a wake brings what came meanwhile.
        await new_session(api, git_repo, [task("late")])
        wake.set()
        await wait_until_async(lambda: published(21), timeout_s=30, message="the late one")
    finally:
        stop.set()
        await loop
    assert await count_rows(sessionmaker, Outbox, Outbox.sent_at.is_(None)) == 0


async def test_a_cancel_request_sets_its_key_and_is_announced(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    ids = await task_ids(api, session["id"])
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.cancel_channel)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    assert (await api.post(f"/v1/tasks/{ids['a']}/cancel")).status_code == 200
    # The task message was still held (no adapter): it is dropped, the cancel goes out.
    assert await state.background.relay.publish_batch() == 1
    assert await redis.exists(keys.tasks("shell")) == 0
    dropped = Outbox.kind == "xadd", Outbox.sent_at.is_not(None), Outbox.publish_count == 0
    assert await count_rows(sessionmaker, Outbox, *dropped) == 1
    assert await redis.get(keys.cancel(ids["a"], 1)) == b"cancelled by token:bootstrap"
    notice = await pubsub.get_message(timeout=2)
    assert notice is not None and notice["data"] == f"{ids['a']}:1".encode()
    await pubsub.aclose()


async def test_a_row_published_twice_runs_its_task_once(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
    adapter: Adapter,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.txt"
    await new_session(api, git_repo, [task("a", prompt=f"echo run >> {runs}")])
    assert await state.background.relay.publish_batch() == 1
    # The relay crashed after XADD but before its commit: the row is still unsent.
    async with sessionmaker() as db, db.begin():
        await db.execute(update(Outbox).values(sent_at=None, outstanding=False))
    assert await state.background.relay.publish_batch() == 1
    assert await redis.xlen(keys.tasks("shell")) == 2

    assert await adapter.process_available() == 2
    assert runs.read_text() == "run\n"
    assert adapter.counts["duplicate"] == 1
    events = [decode(f).message for _, f in await redis.xrange(keys.events)]
    types = [type(e).__name__ for e in events]
    assert types.count("TaskStarted") == 1 and types.count("TaskSucceeded") == 1
    pending = await redis.xpending(keys.tasks("shell"), ADAPTERS_GROUP)
    assert pending["pending"] == 0
    # The orchestrator applies what the adapter reported.
    await state.background.consumer.setup()
    await state.background.consumer.process()
    await state.background.consumer.process()
    tasks = (await api.get("/v1/sessions")).json()
    assert tasks[0]["counts"] == {"succeeded": 1}


async def test_outbox_payload_is_the_exact_envelope(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    await new_session(api, git_repo, [task("a")])
    async with sessionmaker() as db:
        row = await db.scalar(select(Outbox))
    assert row is not None
    stored = json.loads(row.payload["env"])
    await state.background.relay.publish_batch()
    [(_, fields)] = await redis.xrange(keys.tasks("shell"))
    assert json.loads(fields[b"env"]) == stored
    assert uuid.UUID(stored["id"])
