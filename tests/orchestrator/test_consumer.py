"""The event consumer loop: bad entries are dead-lettered and the loop goes on; nothing is
acknowledged before it is applied; a consumer that could not reach the database picks up its
own pending entries when it can."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import (
    Message,
    TaskHeartbeat,
    TaskProgress,
    TaskStarted,
    TaskSucceeded,
)
from swarm_common.streams import ORCHESTRATOR_GROUP, Keys, encode
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.engine import make_engine, make_sessionmaker
from swarm_orchestrator.runtime.consumer import EventConsumer
from tests.orchestrator.helpers import (
    new_session,
    outcome_event,
    proven,
    task,
    task_ids,
    task_states,
)

SM = async_sessionmaker[AsyncSession]


async def _pending(redis: Redis, keys: Keys) -> int:
    return int((await redis.xpending(keys.events, ORCHESTRATOR_GROUP))["pending"])


async def test_malformed_entries_are_dead_lettered_and_the_loop_goes_on(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    consumer = state.background.consumer
    await consumer.setup()
    await redis.xadd(keys.events, {b"env": b"\xff\xfe\x00 not json"})
    await redis.xadd(keys.events, {b"env": b'{"v": 1, "type": "task.started", "id": "x"'})
    await redis.xadd(keys.events, {b"something": b"else"})
    await redis.xadd(keys.events, {b"env": b'{"v": 99, "type": "task.started"}'})
    unknown = TaskStarted(
        session_id=uuid.UUID(sid),
        task_id=uuid.uuid4(),
        attempt=1,
        worker="w",
        branch="b",
        base_commit="c",
    )
    await redis.xadd(keys.events, encode(unknown))  # type: ignore[arg-type]
    started = outcome_event(TaskStarted, sid, ids["a"], branch="b", base_commit="c")
    await redis.xadd(keys.events, await proven(state.sessionmaker, started))  # type: ignore[arg-type]

    while await consumer.process():
        pass
    assert (await task_states(api, sid))["a"] == ("running", 1)
    dead = await redis.xrange(keys.dead)
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert len(reasons) == 5
    assert sum(r.startswith("undecodable") for r in reasons) == 4
    assert reasons[-1].startswith("unknown task")
    assert await _pending(redis, keys) == 0


async def test_an_unreachable_database_leaves_events_pending_until_it_is_back(
    api: httpx.AsyncClient,
    git_repo: Path,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    done = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, commit="a" * 40)
    broken_engine = make_engine("postgresql+asyncpg://postgres:x@127.0.0.1:1/none")
    broken = EventConsumer(
        sessionmaker=make_sessionmaker(broken_engine), redis=redis, keys=keys, consumer="orch-1"
    )
    await broken.setup()
    await redis.xadd(keys.events, await proven(sessionmaker, done))  # type: ignore[arg-type]
    try:
        await broken.process()
    except OSError:
        pass
    else:
        raise AssertionError("the consumer should have failed to reach the database")
    finally:
        await broken_engine.dispose()
    assert await _pending(redis, keys) == 1
    assert (await task_states(api, sid))["a"] == ("queued", 1)

    # The same consumer, with its database back, re-reads its own pending entry first.
    healthy = EventConsumer(sessionmaker=sessionmaker, redis=redis, keys=keys, consumer="orch-1")
    assert await healthy.process() == 1
    assert await _pending(redis, keys) == 0
    assert (await task_states(api, sid))["a"] == ("succeeded", 1)


async def test_entries_of_a_vanished_consumer_are_taken_over(
    api: httpx.AsyncClient,
    git_repo: Path,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    gone = EventConsumer(sessionmaker=sessionmaker, redis=redis, keys=keys, consumer="gone")
    await gone.setup()
    done = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, commit="a" * 40)
    await redis.xadd(keys.events, await proven(sessionmaker, done))  # type: ignore[arg-type]
    # "gone" read the entry and died before applying it.
    await redis.xreadgroup(ORCHESTRATOR_GROUP, "gone", {keys.events: ">"}, count=10)
    survivor = EventConsumer(
        sessionmaker=sessionmaker, redis=redis, keys=keys, consumer="survivor", claim_idle_ms=0
    )
    assert await survivor.claim_stale() == 1
    assert (await task_states(api, sid))["a"] == ("succeeded", 1)
    assert await _pending(redis, keys) == 0


async def test_an_event_delivered_too_often_is_dead_lettered_not_applied(
    api: httpx.AsyncClient,
    git_repo: Path,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    """An event that kept killing the orchestrators that read it is put aside, and the
    attempt it reported runs again rather than wait for it forever."""
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    gone = EventConsumer(sessionmaker=sessionmaker, redis=redis, keys=keys, consumer="gone")
    await gone.setup()
    done = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, commit="a" * 40)
    [entry_id] = [await redis.xadd(keys.events, await proven(sessionmaker, done))]  # type: ignore[arg-type]
    await redis.xreadgroup(ORCHESTRATOR_GROUP, "gone", {keys.events: ">"}, count=10)
    for _ in range(2):  # two more orchestrators took it over and died with it
        await redis.xclaim(keys.events, ORCHESTRATOR_GROUP, "gone", 0, [entry_id])
    survivor = EventConsumer(
        sessionmaker=sessionmaker,
        redis=redis,
        keys=keys,
        consumer="survivor",
        claim_idle_ms=0,
        max_deliveries=3,
    )
    assert await survivor.claim_stale() == 1  # its fourth delivery
    assert (await task_states(api, sid))["a"] == ("queued", 2)
    [(_, dead)] = await redis.xrange(keys.dead)
    assert dead[b"reason"] == b"delivered 4 times"
    assert await _pending(redis, keys) == 0


async def test_nul_bytes_from_an_agent_do_not_lose_its_result(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    consumer = state.background.consumer
    await consumer.setup()
    done = outcome_event(
        TaskSucceeded,
        sid,
        ids["a"],
        exit_code=0,
        commit="a" * 40,
        output_tail="binary\x00output",
        changed_files=["f"],
    )
    await redis.xadd(keys.events, await proven(state.sessionmaker, done))  # type: ignore[arg-type]
    await redis.xadd(keys.events, {b"env": b"[" * 100_000 + b"]" * 100_000})
    while await consumer.process():
        pass
    assert (await task_states(api, sid))["a"] == ("succeeded", 1)
    [attempt] = (await api.get(f"/v1/tasks/{ids['a']}")).json()["attempts"]
    assert attempt["output_tail"] == "binary\ufffdoutput"
    assert await redis.xlen(keys.dead) == 1
    assert await _pending(redis, keys) == 0


async def test_a_start_progress_or_heartbeat_wakes_no_loop_and_a_result_does(
    api: httpx.AsyncClient, git_repo: Path, redis: Redis, keys: Keys, sessionmaker: SM
) -> None:
    """The relay's room is the same after a start (a message out became a run) and nothing
    is merged: a start, progress or heartbeat alone does not wake the relay and the merge
    queue; a result, alone or in a run with them, does."""
    session = await new_session(api, git_repo, [task("a"), task("b")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    woken: list[int] = []
    consumer = EventConsumer(
        sessionmaker=sessionmaker,
        redis=redis,
        keys=keys,
        consumer="orch-wake",
        on_commit=lambda: woken.append(1),
    )
    await consumer.setup()

    async def send(*messages: Message) -> int:
        for message in messages:
            await redis.xadd(keys.events, await proven(sessionmaker, message))  # type: ignore[arg-type]
        before = len(woken)
        while await consumer.process():
            pass
        return len(woken) - before

    def started(key: str) -> Message:
        return outcome_event(TaskStarted, sid, ids[key], branch="b", base_commit="c" * 40)

    assert await send(started("a")) == 0  # alone: one by one
    assert await send(outcome_event(TaskHeartbeat, sid, ids["a"])) == 0
    assert await send(outcome_event(TaskProgress, sid, ids["a"], kind="note", text="hi")) == 0
    assert await send(started("b"), outcome_event(TaskProgress, sid, ids["b"], kind="n")) == 0
    assert (await task_states(api, sid))["b"] == ("running", 1)
    assert await send(outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0)) == 1
    again = outcome_event(TaskProgress, sid, ids["b"], kind="note")
    assert await send(again, outcome_event(TaskSucceeded, sid, ids["b"], exit_code=0)) == 1
    assert (await task_states(api, sid))["b"] == ("succeeded", 1)
