"""The `noop` kind end to end in one process: joins and milestones completed by a `noop`
adapter in batches, reports applied many to a transaction, each exactly once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from swarm_adapter import noop
from swarm_adapter.noop import NoopRunner
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worker import Adapter
from swarm_common.streams import ORCHESTRATOR_GROUP, Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Attempt, Event
from swarm_orchestrator.graph.reports import Outcome
from tests.orchestrator.helpers import live_worker, new_session, task, task_states


@pytest.fixture
def noop_adapter(adapter_settings: AdapterSettings, redis: Redis) -> Adapter:
    settings = adapter_settings.model_copy(
        update={"agent": "noop", "worker_name": "noop-test", "concurrency": 100}
    )
    return Adapter(settings=settings, redis=redis, runner=NoopRunner())


async def _run_all(state: AppState, adapter: Adapter) -> None:
    """Publish, complete and apply until nothing moves."""
    while True:
        published = await state.background.relay.publish_batch()
        completed = await noop.process_batch(adapter, block_ms=None)
        applied = await state.background.consumer.process()
        if not (published or completed or applied):
            return


async def _events(state: AppState, session_id: str, type_: str) -> int:
    async with state.sessionmaker() as db:
        return int(
            await db.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.session_id == session_id, Event.type == type_)
            )
            or 0
        )


async def test_a_join_runs_once_its_parents_succeeded_and_nothing_is_merged(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, noop_adapter: Adapter
) -> None:
    await live_worker(state.sessionmaker, slots=100, agent="noop")
    graph = [
        task("a", agent="noop"),
        task("b", agent="noop"),
        task("join", "a", "b", agent="noop"),
        task("milestone", "join", agent="noop"),
    ]
    session = await new_session(api, git_repo, graph)
    assert await task_states(api, session["id"]) == {
        "a": ("queued", 1),
        "b": ("queued", 1),
        "join": ("pending", 0),
        "milestone": ("pending", 0),
    }
    await _run_all(state, noop_adapter)
    assert await task_states(api, session["id"]) == dict.fromkeys(
        graph_keys(graph), ("succeeded", 1)
    )
    tasks = (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()
    assert {t["merge_status"] for t in tasks} == {"empty"}  # nothing of their own to merge
    assert (await api.get(f"/v1/sessions/{session['id']}")).json()["done"] is True
    assert await _events(state, session["id"], "task.started") == 4
    assert await _events(state, session["id"], "task.succeeded") == 4
    # One report per task, its start carried in its result, applied in runs, none twice.
    assert state.background.consumer.counts.get(Outcome.APPLIED) == 4
    assert noop_adapter.counts["task.succeeded"] == 4
    assert "task.started" not in noop_adapter.counts
    async with state.sessionmaker() as db:
        attempts = (await db.scalars(select(Attempt))).all()
    assert len(attempts) == 4
    for attempt in attempts:  # the start as the adapter stamped it, before the end
        assert attempt.worker == "noop-test"
        assert attempt.started_at is not None and attempt.finished_at is not None
        assert attempt.started_at <= attempt.finished_at


def graph_keys(graph: list[dict[str, object]]) -> list[str]:
    return [str(t["key"]) for t in graph]


async def test_reports_delivered_twice_are_applied_once(
    api: httpx.AsyncClient,
    state: AppState,
    git_repo: Path,
    noop_adapter: Adapter,
    redis: Redis,
    redis_prefix: str,
) -> None:
    """An adapter that died before acknowledging: a peer takes the entries over and reports
    them again, in the same run of reports as the first copies."""
    await live_worker(state.sessionmaker, slots=100, agent="noop")
    session = await new_session(api, git_repo, [task(f"t{i}", agent="noop") for i in range(20)])
    assert await state.background.relay.publish_batch() == 20
    keys = Keys(redis_prefix)
    entries = await noop_adapter.tasks.read_many(100, block_ms=None)
    assert len(entries) == 20
    await noop.complete(noop_adapter, entries)
    for _, fields in await redis.xrange(keys.events):  # each report published twice
        await redis.xadd(keys.events, fields)
    await noop.complete(noop_adapter, entries)  # the same entries, completed again
    while await state.background.consumer.process():
        pass
    assert await task_states(api, session["id"]) == {f"t{i}": ("succeeded", 1) for i in range(20)}
    assert await _events(state, session["id"], "task.succeeded") == 20
    counts = state.background.consumer.counts
    # A report published twice is known again; a new report of an attempt that ended
    # changes nothing, the start it carries included.
    assert counts.get(Outcome.APPLIED) == 20
    assert counts.get(Outcome.DUPLICATE) == 20
    assert counts.get(Outcome.IGNORED) == 20
    assert await _events(state, session["id"], "task.started") == 20
    pending = await redis.xpending(keys.events, ORCHESTRATOR_GROUP)
    assert pending["pending"] == 0  # every report acknowledged
    async with state.sessionmaker() as db:
        ended = await db.scalar(
            select(func.count()).select_from(Attempt).where(Attempt.status == "succeeded")
        )
    assert ended == 20


async def test_a_cancelled_attempt_is_reported_cancelled_not_reached(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, noop_adapter: Adapter
) -> None:
    await live_worker(state.sessionmaker, slots=100, agent="noop")
    session = await new_session(api, git_repo, [task("a", agent="noop"), task("b", agent="noop")])
    assert await state.background.relay.publish_batch() == 2
    ids = {t["key"]: t["id"] for t in (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()}
    assert (await api.post(f"/v1/tasks/{ids['a']}/cancel")).status_code == 200
    await _run_all(state, noop_adapter)
    states = await task_states(api, session["id"])
    assert states["a"][0] == "cancelled" and states["b"] == ("succeeded", 1)


@pytest.mark.parametrize("field", ["requires_approval", "verify"])
async def test_a_noop_task_with_work_to_check_is_refused(
    api: httpx.AsyncClient, git_repo: Path, field: str
) -> None:
    answer = await api.post(
        "/v1/sessions",
        json={
            "title": "x",
            "repo": str(git_repo),
            "tasks": [task("a", agent="noop", **{field: True})],
        },
    )
    assert answer.status_code == 422
    assert field in answer.text
