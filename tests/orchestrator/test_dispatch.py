"""Dispatch (`runtime/dispatch.py`, through the relay): only as many task messages reach an
agent stream as its live adapters have free slots plus the headroom; the rest wait in
PostgreSQL, and go out by fair share across tenants and sessions (weighted round robin),
then priority, then the longest chain of tasks waiting on them, then age; held messages
whose attempt is no longer queued are dropped."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import TaskMessage, TaskStarted, TaskSucceeded
from swarm_common.streams import ADAPTERS_GROUP, Keys, decode, ensure_group
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Outbox, Task
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.runtime.dispatch import (
    Dispatcher,
    Held,
    Shares,
    Stride,
    budget,
    fair_order,
)
from swarm_orchestrator.runtime.relay import Relay
from tests.orchestrator.helpers import (
    apply,
    count_rows,
    live_worker,
    new_session,
    task,
    task_ids,
    tenant_client,
)

SM = async_sessionmaker[AsyncSession]


# -- the decisions, without a database ---------------------------------------------------------


_ids = itertools.count(1)


def _held(n: int, session: uuid.UUID, *, tenant: str | None = None, weight: int = 1) -> list[Held]:
    """`n` held messages of one session, newer than any made before."""
    return [Held(next(_ids), session, tenant, weight, 0) for _ in range(n)]


def test_the_budget_is_free_slots_plus_headroom_less_what_is_out() -> None:
    def room(outstanding: int, headroom: int = 1) -> int:
        return budget(slots=2, running=1, outstanding=outstanding, headroom=headroom, paused=False)

    assert (room(0), room(1), room(2)) == (2, 1, 0)
    assert room(1, headroom=0) == 0
    assert budget(slots=4, running=0, outstanding=0, headroom=2, paused=False) == 6
    # No live adapter, or a kind paused for its provider's limits: only the headroom.
    assert budget(slots=0, running=0, outstanding=0, headroom=1, paused=False) == 1
    assert budget(slots=0, running=0, outstanding=1, headroom=1, paused=False) == 0
    assert budget(slots=4, running=0, outstanding=0, headroom=1, paused=True) == 1
    # More running than slots (an adapter went away): still the headroom, never less.
    assert budget(slots=2, running=3, outstanding=0, headroom=1, paused=False) == 1


@pytest.mark.parametrize("weights", [(2, 1), (3, 1), (1, 1), (5, 2)])
def test_the_round_robin_keeps_the_weights_over_many_picks(weights: tuple[int, int]) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    wa, wb = weights
    held = _held(1000, a, weight=wa) + _held(1000, b, weight=wb)
    picked = Counter(r.session_id for r in fair_order(held, 700))
    assert abs(picked[a] * wb - picked[b] * wa) <= wa + wb  # within one round


def test_the_weights_hold_one_pick_at_a_time_with_two_slots() -> None:
    """The picks of many small rounds (a slot frees, one message goes out) keep the weights
    too: the shares are remembered between rounds."""
    a, b = uuid.uuid4(), uuid.uuid4()
    held = {r.id: r for r in _held(300, a, weight=2) + _held(300, b, weight=1)}
    shares = Shares()
    picked: Counter[uuid.UUID] = Counter()
    for _ in range(300):
        [row] = fair_order(held.values(), 1, shares=shares)
        del held[row.id]
        picked[row.session_id] += 1
    assert (picked[a], picked[b]) == (200, 100)


def test_a_session_back_from_idle_earns_no_credit() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    shares = Shares()
    fair_order(_held(100, a), 100, shares=shares)  # a alone for 100 picks
    both = _held(50, a) + _held(50, b)
    picked = [r.session_id for r in fair_order(both, 20, shares=shares)]
    assert Counter(picked) == {a: 10, b: 10}  # b starts even, not 100 picks ahead


def test_priority_then_age_orders_a_session_and_breaks_ties_between_sessions() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    low = [Held(1, a, None, 1, -100), Held(2, a, None, 1, -100)]
    high = Held(3, a, None, 1, 100)
    assert [r.id for r in fair_order([*low, high], 3)] == [3, 1, 2]
    # Even shares: the tie goes to the higher priority, then the older message.
    other = Held(4, b, None, 1, 100)
    assert [r.id for r in fair_order([*low, other], 2)] == [4, 1]
    assert [r.id for r in fair_order([Held(5, b, None, 1, -100), *low], 2)] == [1, 5]


def test_of_one_priority_the_longer_chain_goes_first() -> None:
    a = uuid.uuid4()
    short, long_ = Held(1, a, None, 1, 0, chain=1), Held(2, a, None, 1, 0, chain=4)
    assert [r.id for r in fair_order([short, long_], 2)] == [2, 1]
    urgent = Held(3, a, None, 1, 10, chain=1)  # priority still comes first
    assert [r.id for r in fair_order([short, long_, urgent], 3)] == [3, 2, 1]


def test_tenants_share_first_then_their_sessions() -> None:
    a1, a2, b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    held = _held(100, a1, tenant="acme") + _held(100, a2, tenant="acme")
    held += _held(100, b, tenant="beta")
    picked = Counter(r.tenant for r in fair_order(held, 60))
    assert picked == {"acme": 30, "beta": 30}  # acme's two sessions do not weigh double
    weighted = Counter(r.tenant for r in fair_order(held, 60, tenant_weights={"acme": 2}))
    assert weighted == {"acme": 40, "beta": 20}


def test_stride_forgets_idle_clients() -> None:
    stride: Stride[str] = Stride()
    for _ in range(10):
        stride.pick({"a": (1, 0)})
    for _ in range(10):
        stride.pick({"b": (1, 0)})
    assert "a" not in stride.passes


# -- through the relay ---------------------------------------------------------------------------


class Slots:
    """An adapter with `n` slots, as the orchestrator sees it: it reads its stream only while
    a slot is free, reports each message it read started, and ends its runs when told."""

    def __init__(self, state: AppState, redis: Redis, n: int) -> None:
        self.state, self.redis, self.n = state, redis, n
        self.stream = state.keys.tasks("shell")
        self.running: list[TaskMessage] = []
        self.started: list[TaskMessage] = []

    async def fill(self) -> list[TaskMessage]:
        """Publish what the relay lets out, then start messages while slots are free."""
        await self.state.background.relay.publish_batch()
        await ensure_group(self.redis, self.stream, ADAPTERS_GROUP)
        began = []
        while len(self.running) < self.n:
            reply: Any = await self.redis.xreadgroup(
                ADAPTERS_GROUP, "slots", {self.stream: ">"}, count=1
            )
            if not reply:
                break
            message = decode(reply[0][1][0][1]).message
            assert isinstance(message, TaskMessage)
            await self._report(TaskStarted, message, branch="b", base_commit="c" * 40)
            self.running.append(message)
            began.append(message)
        self.started += began
        return began

    async def finish_oldest(self) -> list[TaskMessage]:
        """The oldest run ends; the relay lets more out; free slots start them."""
        await self._report(TaskSucceeded, self.running.pop(0), exit_code=0)
        return await self.fill()

    async def _report(self, cls: type[Any], message: TaskMessage, **fields: Any) -> None:
        event = cls(
            session_id=message.session_id,
            task_id=message.task_id,
            attempt=message.attempt,
            worker="w-slots",
            **fields,
        )
        assert await apply(self.state.sessionmaker, self.state.keys, event) == Outcome.APPLIED


async def _stream_keys(redis: Redis, keys: Keys) -> list[str]:
    entries: Any = await redis.xrange(keys.tasks("shell"))
    found = [decode(fields).message for _, fields in entries]
    return [m.task_key for m in found if isinstance(m, TaskMessage)]


async def test_only_free_slots_and_the_headroom_reach_the_stream(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, redis: Redis, sessionmaker: SM
) -> None:
    await new_session(api, git_repo, [task(f"t{i}") for i in range(8)])
    relay = state.background.relay
    assert await relay.publish_batch() == 1  # no live adapter yet: the headroom only
    assert await relay.publish_batch() == 0
    await live_worker(sessionmaker, slots=2)
    assert await relay.publish_batch() == 2
    assert await relay.publish_batch() == 0
    assert await redis.xlen(state.keys.tasks("shell")) == 3
    assert await count_rows(sessionmaker, Outbox, Outbox.sent_at.is_(None)) == 5

    slots = Slots(state, redis, 2)
    assert len(await slots.fill()) == 2  # two start, one waits in the stream
    assert await relay.publish_batch() == 0
    assert await count_rows(sessionmaker, Outbox, Outbox.outstanding) == 1  # started: settled
    assert len(await slots.finish_oldest()) == 1  # the waiting one starts; one more goes out
    assert await redis.xlen(state.keys.tasks("shell")) == 4
    assert await relay.publish_batch() == 0


async def test_a_high_priority_task_goes_out_next_whatever_the_backlog(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, redis: Redis, sessionmaker: SM
) -> None:
    await live_worker(sessionmaker, slots=2)
    low = [task(f"low{i}", priority="low") for i in range(200)]
    session = await new_session(api, git_repo, low)
    slots = Slots(state, redis, 2)
    await slots.fill()
    for _ in range(5):
        await slots.finish_oldest()
    added = await api.post(
        f"/v1/sessions/{session['id']}/tasks", json=[task("urgent", priority="high")]
    )
    assert added.status_code == 201, added.text
    before = len(slots.started)
    while "urgent" not in [m.task_key for m in slots.started]:
        await slots.finish_oldest()
    assert len(slots.started) - before <= 2  # within the next two starts
    # It was the next message out once a slot freed, ahead of 190-odd older ones.
    published = await _stream_keys(redis, state.keys)
    assert published.index("urgent") == before + 1


async def test_a_tasks_chain_is_the_longest_line_of_new_tasks_waiting_on_it(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM
) -> None:
    graph = [
        task("top"),
        task("left", "top"),
        task("right", "top"),
        task("mid", "right"),
        task("bottom", "left", "mid"),
        task("tail", "bottom"),
        task("alone"),
    ]
    session = await new_session(api, git_repo, graph)
    assert await _chains(sessionmaker, session["id"]) == {
        "top": 5,  # top, right, mid, bottom, tail
        "right": 4,
        "mid": 3,
        "left": 3,
        "bottom": 2,
        "tail": 1,
        "alone": 1,
    }
    # Tasks added later count their own line; those counted before keep theirs.
    added = await api.post(
        f"/v1/sessions/{session['id']}/tasks", json=[task("later", "tail"), task("after", "later")]
    )
    assert added.status_code == 201, added.text
    chains = await _chains(sessionmaker, session["id"])
    assert (chains["later"], chains["after"], chains["tail"], chains["top"]) == (2, 1, 1, 5)


async def _chains(sessionmaker: SM, session_id: str) -> dict[str, int]:
    async with sessionmaker() as db:
        rows = await db.execute(
            select(Task.key, Task.chain).where(Task.session_id == uuid.UUID(session_id))
        )
        return {row.key: row.chain for row in rows}


async def test_of_one_priority_the_task_starting_the_longest_chain_goes_out_first(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, redis: Redis, sessionmaker: SM
) -> None:
    session = await new_session(api, git_repo, [task(f"a{i}") for i in range(4)])
    later = [task("root"), task("mid", "root"), task("leaf", "mid")]
    added = await api.post(f"/v1/sessions/{session['id']}/tasks", json=later)
    assert added.status_code == 201, added.text
    await live_worker(sessionmaker, slots=1)
    assert await state.background.relay.publish_batch() == 2  # one slot and the headroom
    # The younger task that a chain of three waits on goes first, then the oldest of the
    # rest (by age alone, a0 and a1 would have gone).
    assert await _stream_keys(redis, state.keys) == ["root", "a0"]


async def test_sessions_sharing_a_kind_progress_at_their_weights(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, redis: Redis, sessionmaker: SM
) -> None:
    await live_worker(sessionmaker, slots=2)
    heavy = await new_session(
        api, git_repo, [task(f"h{i}") for i in range(60)], settings={"weight": 2}
    )
    light = await new_session(api, git_repo, [task(f"l{i}") for i in range(60)])
    slots = Slots(state, redis, 2)
    await slots.fill()
    for _ in range(45):
        await slots.finish_oldest()
    done = Counter(str(m.session_id) for m in slots.started[:45])
    assert abs(done[heavy["id"]] - 2 * done[light["id"]]) <= 2, done  # 30:15 here


async def test_tenants_sharing_a_kind_progress_at_their_weights(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, redis: Redis, sessionmaker: SM
) -> None:
    state.background.relay.dispatch.tenant_weights = {"acme": 3}
    await live_worker(sessionmaker, slots=2)
    acme, beta = await tenant_client(api, "acme"), await tenant_client(api, "beta")
    try:
        sessions = [
            await new_session(acme, git_repo, [task(f"a{i}") for i in range(40)]),
            await new_session(acme, git_repo, [task(f"b{i}") for i in range(40)]),
            await new_session(beta, git_repo, [task(f"c{i}") for i in range(40)]),
        ]
    finally:
        await acme.aclose()
        await beta.aclose()
    tenant = dict(zip([s["id"] for s in sessions], ["acme", "acme", "beta"], strict=True))
    slots = Slots(state, redis, 2)
    await slots.fill()
    for _ in range(40):
        await slots.finish_oldest()
    done = Counter(tenant[str(m.session_id)] for m in slots.started[:40])
    assert abs(done["acme"] - 3 * done["beta"]) <= 2, done  # 30:10 here
    by_session = Counter(str(m.session_id) for m in slots.started[:40])
    assert abs(by_session[sessions[0]["id"]] - by_session[sessions[1]["id"]]) <= 1


async def test_held_messages_of_attempts_no_longer_queued_are_dropped(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, redis: Redis, sessionmaker: SM
) -> None:
    session = await new_session(api, git_repo, [task("a"), task("b"), task("c"), task("d")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    relay = state.background.relay
    assert await relay.publish_batch() == 1  # the headroom: a
    assert (await api.post(f"/v1/tasks/{ids['b']}/cancel")).status_code == 200
    await live_worker(sessionmaker, slots=5)
    assert await relay.publish_batch() == 3  # b's cancel request, c and d
    assert await _stream_keys(redis, state.keys) == ["a", "c", "d"]
    assert await redis.exists(state.keys.cancel(ids["b"], 1)) == 1

    # Cancelling the session drops whatever is still held, and sends nothing of it.
    other = await new_session(api, git_repo, [task(f"x{i}") for i in range(10)])
    assert (await api.post(f"/v1/sessions/{other['id']}/cancel")).status_code == 200
    assert await relay.publish_batch() == 0  # withheld: nobody has them, nobody is asked
    held = Outbox.sent_at.is_(None), Outbox.task_id.is_not(None)
    assert await count_rows(sessionmaker, Outbox, *held) == 0
    dropped = Outbox.task_id.is_not(None), Outbox.publish_count == 0
    assert await count_rows(sessionmaker, Outbox, *dropped) == 1 + 10
    assert await _stream_keys(redis, state.keys) == ["a", "c", "d"]


async def test_a_paused_sessions_queued_work_still_goes_out(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, redis: Redis, sessionmaker: SM
) -> None:
    """Pausing queues nothing new; what was queued finishes, held or not (README)."""
    session = await new_session(api, git_repo, [task("a"), task("b")])
    assert (await api.post(f"/v1/sessions/{session['id']}/pause")).status_code == 200
    await live_worker(sessionmaker, slots=1)
    assert await state.background.relay.publish_batch() == 2
    assert sorted(await _stream_keys(redis, state.keys)) == ["a", "b"]


async def test_racing_relays_never_exceed_the_room_nor_repeat_a_message(
    api: httpx.AsyncClient, git_repo: Path, redis: Redis, keys: Keys, sessionmaker: SM
) -> None:
    await live_worker(sessionmaker, slots=4)
    await new_session(api, git_repo, [task(f"t{i}") for i in range(30)])
    relays = [
        Relay(sessionmaker=sessionmaker, redis=redis, keys=keys, batch=2, dispatch=Dispatcher())
        for _ in range(3)
    ]

    async def drain(relay: Relay) -> int:
        total = 0
        for _ in range(5):
            total += await relay.publish_batch()
        return total

    racing = sum(await asyncio.gather(*(drain(r) for r in relays)))
    # Whatever the race left (a relay that met the lock returns at once), one more pass each.
    after = sum([await r.publish_batch() for r in relays])
    assert racing + after == 5  # four slots and the headroom
    published = await _stream_keys(redis, keys)
    assert len(published) == len(set(published)) == 5


async def test_after_redis_lost_its_data_only_new_attempts_go_out(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, redis: Redis, sessionmaker: SM
) -> None:
    """The reaper queues every queued attempt again, held ones too: their old messages are
    dropped, never published, and the new ones wait for room like any other."""
    assert await state.background.reap_once() == 0  # Redis is known
    await live_worker(sessionmaker, slots=1)
    await new_session(api, git_repo, [task(f"t{i}") for i in range(4)])
    assert await state.background.relay.publish_batch() == 2  # one slot and the headroom
    await redis.delete(*[k async for k in redis.scan_iter(match=state.keys.all_match)])

    assert await state.background.reap_once() == 4
    assert await state.background.relay.publish_batch() == 4 + 2  # 4 cancels, room for 2
    entries: Any = await redis.xrange(state.keys.tasks("shell"))
    attempts = [decode(fields).message for _, fields in entries]
    assert [getattr(m, "attempt", None) for m in attempts] == [2, 2]
    dropped = Outbox.task_id.is_not(None), Outbox.attempt == 1, Outbox.publish_count == 0
    assert await count_rows(sessionmaker, Outbox, *dropped) == 2
    held = Outbox.sent_at.is_(None), Outbox.task_id.is_not(None)
    assert await count_rows(sessionmaker, Outbox, *held) == 2
