"""Proof of origin of adapter reports (`graph/provenance.py`), on real Redis and PostgreSQL:
events appended to `swarm:events` by anyone but the adapter that holds the attempt (no
proof, another attempt's proof, a proof of other bytes, the wrong worker) are dropped,
counted and acknowledged, and change nothing; the genuine adapter's events, and a
redelivery of them, still apply."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_adapter.worker import Adapter
from swarm_common.messages import (
    Message,
    TaskFailed,
    TaskHeartbeat,
    TaskProgress,
    TaskStarted,
    TaskSucceeded,
)
from swarm_common.streams import (
    ORCHESTRATOR_GROUP,
    PROOF_FIELD,
    Keys,
    decode,
    encode,
    prove,
)
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Attempt, Event
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.runtime.consumer import EventConsumer
from tests.orchestrator.helpers import (
    apply,
    event_key,
    new_session,
    outcome_event,
    task,
    task_ids,
    task_states,
)
from tests.waiting import wait_until_async

SM = async_sessionmaker[AsyncSession]
FORGED_COMMIT = "f" * 40


async def _drain(consumer: EventConsumer) -> None:
    while await consumer.process():
        pass


async def _running(api: httpx.AsyncClient, consumer: EventConsumer, sid: str) -> bool:
    await _drain(consumer)
    return (await task_states(api, sid))["a"] == ("running", 1)


async def _pending(redis: Redis, keys: Keys) -> int:
    return int((await redis.xpending(keys.events, ORCHESTRATOR_GROUP))["pending"])


async def _timeline(sessionmaker: SM, task_id: uuid.UUID) -> list[dict[str, Any]]:
    """A task's timeline entries, read from the table (the API's pages wait until every older
    transaction of the whole cluster ends, which other test runs may hold up)."""
    async with sessionmaker() as db:
        rows = (
            await db.scalars(select(Event).where(Event.task_id == task_id).order_by(Event.id))
        ).all()
    return [{"type": e.type, "actor": e.actor, "data": e.data} for e in rows]


async def test_forged_reports_are_dropped_counted_and_the_genuine_ones_apply(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
    adapter: Adapter,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    go = tmp_path / "go"
    prompt = f"while [ ! -e {go} ]; do sleep 0.05; done; echo genuine > work.txt"
    victim = await new_session(api, git_repo, [task("a", prompt=prompt)])
    sid = victim["id"]
    a = (await task_ids(api, sid))["a"]
    assert await state.background.relay.publish_batch() == 1
    [(_, task_fields)] = await redis.xrange(keys.tasks("shell"))
    key_a = await event_key(sessionmaker, a, 1)
    assert key_a is not None and decode(task_fields).message.event_key == key_a

    consumer = state.background.consumer
    await consumer.setup()
    run = asyncio.create_task(adapter.process_next(block_ms=None))
    try:
        await wait_until_async(lambda: _running(api, consumer, sid), timeout_s=20)
        # Another tenant's task, queued: its attempt has a key of its own.
        other = await new_session(api, git_repo, [task("b", prompt="true")])
        b = (await task_ids(api, other["id"]))["b"]
        key_b = await event_key(sessionmaker, b, 1)
        assert key_b is not None and key_b != key_a
        rejected_before = consumer.counts.get(Outcome.REJECTED, 0)

        def about_a(cls: type[Message], worker: str = "shell-test", **fields: Any) -> Message:
            return cls(session_id=uuid.UUID(sid), task_id=a, attempt=1, worker=worker, **fields)

        succeeded = about_a(TaskSucceeded, exit_code=0, commit=FORGED_COMMIT, changed_files=["x"])
        failed = about_a(TaskFailed, reason="exit_code", exit_code=1)
        [started_proof] = [
            f[PROOF_FIELD.encode()]
            for _, f in await redis.xrange(keys.events)
            if decode(f).type == "task.started"
        ]
        forgeries: list[dict[str, bytes]] = [
            # No proof at all: what the adversarial tester appended.
            encode(about_a(TaskProgress, kind="message", text="forged progress")),
            encode(failed),
            encode(about_a(TaskHeartbeat)),
            # Another attempt's key (the other tenant's).
            prove(encode(succeeded), key_b),
            # The genuine started event's proof beside other bytes.
            {**encode(failed), PROOF_FIELD: started_proof},
            # The right key (say it leaked), but not the worker that claimed the attempt.
            prove(encode(about_a(TaskSucceeded, worker="intruder", commit=FORGED_COMMIT)), key_a),
            # A queued attempt nobody claimed yet is no easier.
            encode(
                TaskStarted(
                    session_id=uuid.UUID(other["id"]),
                    task_id=b,
                    attempt=1,
                    worker="shell-test",
                    branch="x",
                    base_commit="y",
                )
            ),
        ]
        for fields in forgeries:
            await redis.xadd(keys.events, fields)  # type: ignore[arg-type]
        await _drain(consumer)

        # Exactly the forgeries: the genuine heartbeats meanwhile were applied, not rejected.
        assert consumer.counts.get(Outcome.REJECTED, 0) - rejected_before == len(forgeries)
        assert await _pending(redis, keys) == 0  # dropped means acknowledged
        assert await redis.xlen(keys.dead) == 0
        assert (await task_states(api, sid))["a"] == ("running", 1)
        assert (await task_states(api, other["id"]))["b"] == ("queued", 1)
        [attempt] = (await api.get(f"/v1/tasks/{a}")).json()["attempts"]
        assert (attempt["status"], attempt["worker"], attempt["commit"]) == (
            "running",
            "shell-test",
            None,
        )
        types = [e["type"] for e in await _timeline(sessionmaker, a)]
        assert types == ["task.created", "task.queued", "task.started", "event.rejected"]
        assert [e["type"] for e in await _timeline(sessionmaker, b)][-1] == "event.rejected"
    finally:
        go.touch()
        await asyncio.wait_for(run, timeout=30)

    await _drain(consumer)
    assert (await task_states(api, sid))["a"] == ("succeeded", 1)
    detail = (await api.get(f"/v1/tasks/{a}")).json()
    assert detail["result"]["commit"] not in (None, FORGED_COMMIT)
    assert detail["result"]["changed_files"] == ["work.txt"]
    assert consumer.counts.get(Outcome.REJECTED, 0) - rejected_before == len(forgeries)

    # The genuine result delivered again is a duplicate, not a forgery.
    [result_fields] = [
        f
        for _, f in await redis.xrange(keys.events)
        if decode(f).type == "task.succeeded" and decode(f).message.commit != FORGED_COMMIT
    ]
    await redis.xadd(keys.events, result_fields)
    duplicates = consumer.counts.get(Outcome.DUPLICATE, 0)
    await _drain(consumer)
    assert consumer.counts.get(Outcome.DUPLICATE, 0) == duplicates + 1
    assert consumer.counts.get(Outcome.REJECTED, 0) - rejected_before == len(forgeries)

    # The keys show nowhere: API answers, timeline entries, log lines.
    shown = [
        (await api.get(f"/v1/tasks/{a}")).text,
        (await api.get(f"/v1/tasks/{b}")).text,
        json.dumps(await _timeline(sessionmaker, a)),
        json.dumps(await _timeline(sessionmaker, b)),
        (await api.get(f"/v1/sessions/{sid}")).text,
        (await api.get("/v1/workers")).text,
    ]
    logged = [repr(record.__dict__) for record in caplog.records]
    for key in (key_a, key_b):
        assert not any(key in text for text in shown + logged)


async def test_a_forged_result_delivered_too_often_does_not_end_the_attempt(
    api: httpx.AsyncClient, git_repo: Path, redis: Redis, keys: Keys, sessionmaker: SM
) -> None:
    """A report that cannot be applied runs its attempt again (see `test_consumer`), but only
    a proven one: a forged report that keeps failing must not end a running attempt."""
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    gone = EventConsumer(sessionmaker=sessionmaker, redis=redis, keys=keys, consumer="gone")
    await gone.setup()
    forged = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, commit=FORGED_COMMIT)
    entry_id = await redis.xadd(keys.events, encode(forged))  # type: ignore[arg-type]
    await redis.xreadgroup(ORCHESTRATOR_GROUP, "gone", {keys.events: ">"}, count=10)
    for _ in range(2):
        await redis.xclaim(keys.events, ORCHESTRATOR_GROUP, "gone", 0, [entry_id])
    survivor = EventConsumer(
        sessionmaker=sessionmaker,
        redis=redis,
        keys=keys,
        consumer="survivor",
        claim_idle_ms=0,
        max_deliveries=3,
    )
    assert await survivor.claim_stale() == 1
    assert survivor.counts[Outcome.REJECTED] == 1
    assert (await task_states(api, sid))["a"] == ("queued", 1)
    assert await _pending(redis, keys) == 0


async def test_an_attempt_without_a_key_accepts_no_report(
    api: httpx.AsyncClient, git_repo: Path, keys: Keys, sessionmaker: SM
) -> None:
    """An attempt queued before the keys existed (migration 0006) cannot tell its adapter's
    reports from forgeries: they are dropped, and a person retries the task."""
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    a = (await task_ids(api, sid))["a"]
    async with sessionmaker() as db, db.begin():
        await db.execute(update(Attempt).where(Attempt.task_id == a).values(event_key=None))
    started = outcome_event(TaskStarted, sid, a, branch="b", base_commit="c")
    assert await apply(sessionmaker, keys, started) == Outcome.REJECTED
    assert (await task_states(api, sid))["a"] == ("queued", 1)
    async with sessionmaker() as db:
        worker = await db.scalar(select(Attempt.worker).where(Attempt.task_id == a))
    assert worker is None
