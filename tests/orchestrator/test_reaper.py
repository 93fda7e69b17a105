"""The reaper: an attempt whose lease expired (or whose claim vanished while it ran) is
declared lost once, its task queued anew and the old attempt fenced off; a Redis that lost
its data gets everything in flight back; the relay and the reaper run one replica at a time;
and `/v1/system` sets the mode that the adapters obey."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import leases
from swarm_common.messages import (
    TaskFailed,
    TaskHeartbeat,
    TaskMessage,
    TaskStarted,
    TaskSucceeded,
    utcnow,
)
from swarm_common.streams import ADAPTERS_GROUP, Keys, decode
from swarm_common.system import SystemMode, SystemState, publish_mode, read_mode
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.advisory import try_xact_lock
from swarm_orchestrator.db.models import Attempt, Event, Outbox
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.graph.retry import RetryPolicy
from swarm_orchestrator.runtime.reaper import Reaper, declare_lost
from tests.orchestrator.helpers import (
    apply,
    count_rows,
    live_worker,
    new_session,
    outcome_event,
    task,
    task_ids,
    task_states,
)

SM = async_sessionmaker[AsyncSession]


async def _redis_known(redis: Redis, keys: Keys) -> None:
    """Mark Redis as known to the orchestrator, as a first reaper pass would, so a test of
    lease reaping is not a test of transport recovery."""
    await redis.set(keys.epoch, "test")


async def _claim(
    redis: Redis, keys: Keys, task_id: uuid.UUID, attempt: int, worker: str = "w-test"
) -> None:
    claimed = await leases.claim(
        redis, keys, task_id=task_id, attempt=attempt, worker=worker, lease_s=60, claim_ttl_s=3600
    )
    assert claimed


async def _expire(redis: Redis, keys: Keys, task_id: uuid.UUID, attempt: int) -> None:
    """A worker claimed the attempt, then fell silent for a whole lease."""
    await _claim(redis, keys, task_id, attempt, worker="w-dead")
    assert await redis.delete(keys.lease(task_id, attempt)) == 1


async def _start(sm: SM, keys: Keys, sid: str, task_id: uuid.UUID, attempt: int = 1) -> None:
    started = outcome_event(
        TaskStarted, sid, task_id, attempt=attempt, branch="b", base_commit="c" * 40
    )
    assert await apply(sm, keys, started) == Outcome.APPLIED


async def _heard_from(sm: SM, keys: Keys, sid: str, task_id: uuid.UUID, attempt: int = 1) -> None:
    """Its worker started the attempt and was heard from since (a heartbeat): lost later, it
    is lost (`max_lost`), not a failed start (see tests/orchestrator/test_watchdog.py)."""
    await _start(sm, keys, sid, task_id, attempt)
    beat = outcome_event(TaskHeartbeat, sid, task_id, attempt=attempt)
    assert await apply(sm, keys, beat) == Outcome.APPLIED


async def _attempts(sm: SM, task_id: uuid.UUID) -> list[tuple[int, str]]:
    async with sm() as db:
        rows = await db.execute(
            select(Attempt.number, Attempt.status)
            .where(Attempt.task_id == task_id)
            .order_by(Attempt.number)
        )
        return [(n, s) for n, s in rows.all()]


async def _task_messages(redis: Redis, keys: Keys) -> list[tuple[str, int]]:
    found = []
    for _, fields in await redis.xrange(keys.tasks("shell")) or []:
        message = decode(fields or {}).message
        assert isinstance(message, TaskMessage)
        found.append((message.task_key, message.attempt))
    return found


async def _timeline(api: httpx.AsyncClient, sid: str, prefix: str) -> list[dict[str, Any]]:
    events = (await api.get(f"/v1/sessions/{sid}/events")).json()
    return [e for e in events if e["type"].startswith(prefix)]


async def test_an_expired_lease_makes_the_attempt_lost_and_queues_a_new_one(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    a = (await task_ids(api, sid))["a"]
    assert await state.background.relay.publish_batch() == 1
    await _redis_known(redis, keys)
    await _heard_from(sessionmaker, keys, sid, a)
    await _expire(redis, keys, a, 1)

    assert await state.background.reap_once() == 1
    assert state.background.wake.is_set()  # the relay is told at once
    assert (await task_states(api, sid))["a"] == ("queued", 2)
    assert await _attempts(sessionmaker, a) == [(1, "lost"), (2, "queued")]
    detail = (await api.get(f"/v1/tasks/{a}")).json()
    assert detail["attempts"][0]["reason"] == "lease expired: worker w-dead went silent"
    assert detail["attempts"][0]["worker"] == "w-test"  # who started it, not overwritten
    assert detail["reason"].startswith("attempt 1 lost")
    [lost] = await _timeline(api, sid, "attempt.lost")
    assert (lost["attempt"], lost["data"]["will_retry"], lost["data"]["lost"]) == (1, True, 1)
    assert lost["data"]["worker"] == "w-dead"

    assert await state.background.relay.publish_batch() == 2  # the new message, the cancel
    assert await _task_messages(redis, keys) == [("a", 1), ("a", 2)]
    assert await redis.get(keys.cancel(a, 1)) == b"lost"
    assert await redis.get(keys.cancel(a, 2)) is None
    # Nothing more to reap: the new attempt waits in its stream, unclaimed.
    assert await state.background.reap_once() == 0
    assert (await task_states(api, sid))["a"] == ("queued", 2)


async def test_an_attempt_whose_message_is_still_held_is_not_inspected(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    """The reaper looks only at attempts an adapter may hold: one whose message waits in
    the outbox is passed over even with a stale lease under its name (here faked: no
    adapter could have claimed it), while the published one beside it is reaped."""
    session = await new_session(api, git_repo, [task("out", priority=1), task("held")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    assert await state.background.relay.publish_batch() == 1  # the headroom: `out`
    await _redis_known(redis, keys)
    await _heard_from(sessionmaker, keys, sid, ids["out"])
    for key in ("out", "held"):
        await _expire(redis, keys, ids[key], 1)

    assert await state.background.reap_once() == 1
    assert await task_states(api, sid) == {"out": ("queued", 2), "held": ("queued", 1)}


async def test_held_done_and_unclaimed_queued_attempts_are_left_alone(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    tasks = [task("held_running"), task("held_queued"), task("done"), task("waiting")]
    session = await new_session(api, git_repo, tasks)
    sid = session["id"]
    ids = await task_ids(api, sid)
    await _redis_known(redis, keys)
    await _claim(redis, keys, ids["held_running"], 1)
    await _start(sessionmaker, keys, sid, ids["held_running"])
    await _claim(redis, keys, ids["held_queued"], 1)  # claimed, its start not applied yet
    await _claim(redis, keys, ids["done"], 1)
    await _start(sessionmaker, keys, sid, ids["done"])
    await leases.finish(redis, keys, task_id=ids["done"], attempt=1, worker="w-test", done_ttl_s=60)
    assert await redis.exists(keys.lease(ids["done"], 1)) == 0  # the lease is gone, but done
    before = await count_rows(sessionmaker, Outbox)

    assert await state.background.reap_once() == 0
    assert await task_states(api, sid) == {
        "held_running": ("running", 1),
        "held_queued": ("queued", 1),
        "done": ("running", 1),
        "waiting": ("queued", 1),
    }
    assert await count_rows(sessionmaker, Attempt, Attempt.status == "lost") == 0
    assert await count_rows(sessionmaker, Outbox) == before
    assert await _timeline(api, sid, "attempt.lost") == []


async def test_a_running_attempt_whose_claim_vanished_is_lost_but_not_a_noop_tasks(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    """A noop task takes no claim: its start applied before its result (they came in two
    batches of the event consumer) is not a claim that vanished."""
    session = await new_session(api, git_repo, [task("a"), task("join", agent="noop")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    await _redis_known(redis, keys)
    for key in ("a", "join"):
        await _start(sessionmaker, keys, sid, ids[key])  # running, and Redis has no claim

    assert await state.background.reap_once() == 1
    assert await task_states(api, sid) == {"a": ("queued", 2), "join": ("running", 1)}
    detail = (await api.get(f"/v1/tasks/{ids['a']}")).json()
    assert [(x["number"], x["status"]) for x in detail["attempts"]] == [(1, "lost"), (2, "queued")]
    assert detail["attempts"][0]["reason"] == "its claim vanished from Redis"


async def test_a_late_result_of_the_lost_attempt_is_ignored_and_the_new_one_applies(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    a = (await task_ids(api, sid))["a"]
    await _redis_known(redis, keys)
    await _heard_from(sessionmaker, keys, sid, a)
    await _expire(redis, keys, a, 1)
    assert await state.background.reap_once() == 1

    # The worker was only cut off; it comes back and reports the old attempt's result.
    late = outcome_event(TaskSucceeded, sid, a, attempt=1, exit_code=0, commit="1" * 40)
    assert await apply(sessionmaker, keys, late) == Outcome.STALE
    assert (await task_states(api, sid))["a"] == ("queued", 2)
    assert await _attempts(sessionmaker, a) == [(1, "lost"), (2, "queued")]

    await _claim(redis, keys, a, 2, worker="w-new")
    await _start(sessionmaker, keys, sid, a, attempt=2)
    fresh = outcome_event(TaskSucceeded, sid, a, attempt=2, exit_code=0, commit="2" * 40)
    assert await apply(sessionmaker, keys, fresh) == Outcome.APPLIED
    detail = (await api.get(f"/v1/tasks/{a}")).json()
    assert (detail["status"], detail["attempt"]) == ("succeeded", 2)
    assert detail["result"]["commit"] == "2" * 40
    assert [(x["number"], x["status"]) for x in detail["attempts"]] == [
        (1, "lost"),
        (2, "succeeded"),
    ]


async def test_a_task_lost_more_than_max_lost_times_fails_and_blocks_its_dependents(
    api: httpx.AsyncClient,
    git_repo: Path,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    session = await new_session(api, git_repo, [task("a", max_attempts=1), task("b", "a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    reaper = Reaper(
        sessionmaker=sessionmaker, redis=redis, keys=keys, policy=RetryPolicy(max_lost=2)
    )
    await _redis_known(redis, keys)
    for number in (1, 2):  # lost attempts do not count against max_attempts
        await _heard_from(sessionmaker, keys, sid, ids["a"], number)
        await _expire(redis, keys, ids["a"], number)
        assert await reaper.reap_once() == 1
        assert (await task_states(api, sid))["a"] == ("queued", number + 1)

    await _heard_from(sessionmaker, keys, sid, ids["a"], 3)
    await _expire(redis, keys, ids["a"], 3)
    assert await reaper.reap_once() == 1
    states = await task_states(api, sid)
    assert states["a"] == ("failed", 3)
    assert states["b"][0] == "blocked"
    assert await _attempts(sessionmaker, ids["a"]) == [(1, "lost"), (2, "lost"), (3, "lost")]
    detail = (await api.get(f"/v1/tasks/{ids['a']}")).json()
    assert detail["reason"].startswith("lost 3 times")
    last = (await _timeline(api, sid, "attempt.lost"))[-1]
    assert (last["attempt"], last["data"]["will_retry"]) == (3, False)
    assert await reaper.reap_once() == 0  # nothing in flight any more


async def test_redis_losing_its_data_queues_everything_in_flight_again_once(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    assert await state.background.reap_once() == 0  # the first pass marks Redis known
    assert await redis.exists(keys.epoch) == 1
    tasks = [task("queued"), task("running"), task("later", "queued")]
    await live_worker(sessionmaker, slots=2)
    session = await new_session(api, git_repo, tasks)
    sid = session["id"]
    ids = await task_ids(api, sid)
    assert await state.background.relay.publish_batch() == 2
    await _claim(redis, keys, ids["running"], 1)
    await _start(sessionmaker, keys, sid, ids["running"])
    async with sessionmaker() as db:
        already_sent = len((await db.scalars(select(Outbox.id))).all())

    # Redis restarts without persistence: every key of this deployment is gone.
    wiped = [k async for k in redis.scan_iter(match=keys.all_match)]
    await redis.delete(*wiped)

    assert await state.background.reap_once() == 2
    assert await task_states(api, sid) == {
        "queued": ("queued", 2),
        "running": ("queued", 2),
        "later": ("pending", 0),
    }
    for key in ("queued", "running"):
        assert await _attempts(sessionmaker, ids[key]) == [(1, "lost"), (2, "queued")]
    assert await redis.exists(keys.epoch) == 1
    assert await read_mode(redis, keys) == SystemMode.RUNNING
    assert await redis.exists(keys.control) == 1

    assert await state.background.relay.publish_batch() == 4  # two messages, two cancels
    assert await count_rows(sessionmaker, Outbox) == already_sent + 4
    assert sorted(await _task_messages(redis, keys)) == [("queued", 2), ("running", 2)]
    # The relay made the adapters' group again on the stream Redis forgot.
    groups = await redis.xinfo_groups(keys.tasks("shell"))
    assert [g["name"] for g in groups] == [ADAPTERS_GROUP.encode()]

    assert await state.background.reap_once() == 0
    assert await count_rows(sessionmaker, Attempt, Attempt.status == "lost") == 2


async def test_a_missing_epoch_alone_requeues_even_attempts_with_held_leases(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    session = await new_session(api, git_repo, [task("a"), task("b")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    await _claim(redis, keys, ids["a"], 1)
    await _start(sessionmaker, keys, sid, ids["a"])
    assert await redis.exists(keys.epoch) == 0

    assert await state.background.reap_once() == 2
    assert await task_states(api, sid) == {"a": ("queued", 2), "b": ("queued", 2)}
    lost = await _timeline(api, sid, "attempt.lost")
    assert {e["data"]["reason"] for e in lost} == {
        "Redis lost its data (restart without persistence or flush)"
    }
    assert await state.background.reap_once() == 0


async def test_recovery_with_more_tasks_in_flight_than_one_batch_loses_each_once(
    api: httpx.AsyncClient,
    git_repo: Path,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    session = await new_session(api, git_repo, [task(f"t{i}") for i in range(3)])
    sid = session["id"]
    reaper = Reaper(
        sessionmaker=sessionmaker, redis=redis, keys=keys, policy=RetryPolicy(max_lost=5), batch=2
    )
    assert await reaper.reap_once() == 3
    states = await task_states(api, sid)
    assert states == {f"t{i}": ("queued", 2) for i in range(3)}


async def test_two_reapers_at_once_declare_each_attempt_lost_once(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    session = await new_session(api, git_repo, [task(f"t{i}") for i in range(6)])
    sid = session["id"]
    ids = await task_ids(api, sid)
    await _redis_known(redis, keys)
    for task_id in ids.values():
        await _heard_from(sessionmaker, keys, sid, task_id)
        await _expire(redis, keys, task_id, 1)
    other = Reaper(sessionmaker=sessionmaker, redis=redis, keys=keys, policy=RetryPolicy())
    mine = state.background.reaper

    reaped = await asyncio.gather(mine.reap_once(), other.reap_once(), other.reap_once())
    assert sum(reaped) == 6
    for task_id in ids.values():
        assert await _attempts(sessionmaker, task_id) == [(1, "lost"), (2, "queued")]
    assert await count_rows(sessionmaker, Outbox, Outbox.kind == "cancel") == 6
    assert await count_rows(sessionmaker, Event, Event.type == "attempt.lost") == 6
    assert set((await task_states(api, sid)).values()) == {("queued", 2)}


async def test_a_reaper_pass_is_skipped_while_another_replica_reaps(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    a = (await task_ids(api, sid))["a"]
    await _redis_known(redis, keys)
    await _heard_from(sessionmaker, keys, sid, a)
    await _expire(redis, keys, a, 1)
    async with sessionmaker() as other, other.begin():
        assert await try_xact_lock(other, f"reaper:{keys.prefix}")
        assert await state.background.reap_once() == 0
        assert (await task_states(api, sid))["a"] == ("running", 1)
    assert await state.background.reap_once() == 1
    assert (await task_states(api, sid))["a"] == ("queued", 2)


async def test_declaring_one_attempt_lost_twice_at_once_counts_once(
    api: httpx.AsyncClient, git_repo: Path, keys: Keys, sessionmaker: SM
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    a = (await task_ids(api, sid))["a"]

    async def declare() -> bool:
        async with sessionmaker() as db, db.begin():
            return await declare_lost(
                db, task_id=a, attempt=1, reason="test", keys=keys, policy=RetryPolicy()
            )

    assert sorted(await asyncio.gather(declare(), declare())) == [False, True]
    assert await _attempts(sessionmaker, a) == [(1, "lost"), (2, "queued")]
    assert await count_rows(sessionmaker, Outbox, Outbox.kind == "cancel") == 1
    # An attempt that is no longer current is not declared lost.
    assert await declare() is False
    assert (await task_states(api, sid))["a"] == ("queued", 2)


async def test_the_relay_publishes_nothing_while_another_replica_holds_its_lock(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    await live_worker(sessionmaker, slots=2)
    await new_session(api, git_repo, [task("a"), task("b")])
    relay = state.background.relay
    async with sessionmaker() as other, other.begin():
        assert await try_xact_lock(other, f"relay:{keys.prefix}")
        assert await relay.publish_batch() == 0
        assert await redis.exists(keys.tasks("shell")) == 0
        assert await count_rows(sessionmaker, Outbox, Outbox.sent_at.is_(None)) == 2
    assert await relay.publish_batch() == 2
    assert await redis.xlen(keys.tasks("shell")) == 2
    assert await count_rows(sessionmaker, Outbox, Outbox.sent_at.is_(None)) == 0


async def test_a_dead_lettered_task_message_is_not_retried(
    api: httpx.AsyncClient, git_repo: Path, keys: Keys, sessionmaker: SM
) -> None:
    tasks = [task("dead", max_attempts=3), task("flaky", max_attempts=3), task("child", "dead")]
    session = await new_session(api, git_repo, tasks)
    sid = session["id"]
    ids = await task_ids(api, sid)
    for key, reason in (("dead", "dead_lettered"), ("flaky", "exit_code")):
        failed = outcome_event(TaskFailed, sid, ids[key], reason=reason, exit_code=1)
        assert await apply(sessionmaker, keys, failed) == Outcome.APPLIED
    states = await task_states(api, sid)
    assert states["dead"] == ("failed", 1)
    assert states["child"][0] == "blocked"
    assert states["flaky"] == ("pending", 1)  # an ordinary failure is retried
    [dead] = [
        e for e in await _timeline(api, sid, "task.failed") if e["task_id"] == str(ids["dead"])
    ]
    assert dead["data"]["will_retry"] is False


async def test_the_system_mode_is_set_published_and_noted_on_timelines(
    api: httpx.AsyncClient,
    git_repo: Path,
    state: AppState,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
) -> None:
    first = await new_session(api, git_repo, [task("a"), task("b"), task("c", "a")])
    second = await new_session(api, git_repo, [task("x")])
    ids = await task_ids(api, first["id"])
    await _claim(redis, keys, ids["a"], 1)
    await _start(sessionmaker, keys, first["id"], ids["a"])
    await redis.hset(keys.worker("w-live"), mapping={"agent": "shell"})

    initial = (await api.get("/v1/system")).json()
    assert initial["mode"] == "running" and initial["changed_by"] == ""
    assert (initial["running"], initial["queued"], initial["workers_alive"]) == (1, 2, 1)

    drained = await api.post("/v1/system/drain")
    assert drained.status_code == 200
    body = drained.json()
    assert (body["mode"], body["changed_by"]) == ("draining", "token:bootstrap")
    assert body["changed_at"] is not None
    assert (body["running"], body["queued"]) == (1, 2)
    assert await read_mode(redis, keys) == SystemMode.DRAINING
    control = await redis.get(keys.control)
    assert control is not None and json.loads(control)["by"] == "token:bootstrap"
    assert (await api.post("/v1/system/drain")).json()["mode"] == "draining"  # no change

    assert (await api.post("/v1/system/stop")).json()["mode"] == "stopped"
    assert await read_mode(redis, keys) == SystemMode.STOPPED
    assert (await api.get("/v1/system")).json()["mode"] == "stopped"

    # A Redis that forgot the mode gets it back from the reaper's next pass.
    await redis.delete(keys.control)
    await _redis_known(redis, keys)
    assert await state.background.reap_once() == 0
    assert await read_mode(redis, keys) == SystemMode.STOPPED

    assert (await api.post("/v1/system/resume")).json()["mode"] == "running"
    assert await read_mode(redis, keys) == SystemMode.RUNNING
    for sid in (first["id"], second["id"]):
        noted = await _timeline(api, sid, "system.")
        assert [(e["type"], e["actor"], e["data"]["from"]) for e in noted] == [
            ("system.draining", "token:bootstrap", "running"),
            ("system.stopped", "token:bootstrap", "draining"),
            ("system.running", "token:bootstrap", "stopped"),
        ]


async def test_the_reaper_never_undoes_a_mode_set_after_it_read_the_database(
    state: AppState, redis: Redis, keys: Keys
) -> None:
    """The reaper re-publishes the mode it read from PostgreSQL; a stop set (and published)
    in between must survive that, or adapters would run again for a pass."""
    now = utcnow()
    stale = SystemState(mode=SystemMode.RUNNING, by="reaper", at=now - timedelta(seconds=1))
    never_set = SystemState(mode=SystemMode.RUNNING)  # no row in the database yet
    await publish_mode(redis, keys, SystemState(mode=SystemMode.STOPPED, by="api", at=now))
    assert not await publish_mode(redis, keys, stale, unless_newer=True)
    assert not await publish_mode(redis, keys, never_set, unless_newer=True)
    assert await read_mode(redis, keys) == SystemMode.STOPPED
    await redis.delete(keys.control)  # Redis lost it: the reaper's copy is all there is
    assert await publish_mode(redis, keys, stale, unless_newer=True)
    assert await read_mode(redis, keys) == SystemMode.RUNNING
