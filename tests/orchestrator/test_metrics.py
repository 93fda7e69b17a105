"""`GET /metrics` (`observability/`): who may read it; the figures read at scrape time from
PostgreSQL and Redis (tasks by status, held messages, stream lag and pending entries, live
adapters and free slots, dead letters); the counters that move as events are applied
(attempts by outcome and reason, waits and run times, retries, merges and conflicts,
checkpoints, rollbacks, lost attempts, reclaims, silent adapters, tokens and cost, budget
warnings, events handled), each once, after its transaction commits. And request ids:
echoed or made, on every answer, and on the log lines of the request."""

from __future__ import annotations

import io
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import select, update

from swarm_common.logs import KeyValueFormatter
from swarm_common.messages import TaskFailed, TaskProgress, TaskStarted, TaskSucceeded, utcnow
from swarm_common.prices import PriceTable
from swarm_common.streams import ADAPTERS_GROUP, ORCHESTRATOR_GROUP, Keys, dead_letter
from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.engine import make_engine, make_sessionmaker
from swarm_orchestrator.db.models import Attempt, Task, Worker
from swarm_orchestrator.graph import fleet
from swarm_orchestrator.graph.retry import RetryPolicy
from swarm_orchestrator.observability import metrics
from swarm_orchestrator.runtime.consumer import EventConsumer
from swarm_orchestrator.runtime.reaper import declare_lost
from swarm_orchestrator.settings import OrchestratorSettings
from tests.conftest import init_repo
from tests.e2e.scrape import Samples, parse, value
from tests.e2e.stack import TEST_TOKEN
from tests.orchestrator.helpers import (
    apply,
    live_worker,
    mirror_commit,
    new_session,
    outcome_event,
    proven,
    task,
    task_ids,
    tenant_client,
)

METRICS_TOKEN = "scraper-secret-0123456789abcdef"
MODEL = "claude-sonnet-4-5"


async def scrape(api: httpx.AsyncClient) -> Samples:
    response = await api.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.fixture
def fresh(state: AppState) -> AppState:
    """The app state, its scrape-time figures read anew on every scrape."""
    state.gauges.ttl_s = 0
    return state


# -- who may read them ---------------------------------------------------------------------


@pytest.fixture
async def scraped_app(settings: OrchestratorSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An app with a metrics token, and a client that sends no token of its own."""
    app = create_app(settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swarm.test") as client:
            yield client


async def test_the_metrics_need_a_token_without_a_tenant_or_the_metrics_token(
    scraped_app: httpx.AsyncClient,
) -> None:
    api = scraped_app
    assert (await api.get("/metrics")).status_code == 401
    scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    answered = await api.get("/metrics", headers=scraper)
    assert answered.status_code == 200
    assert value(parse(answered.text), "swarm_store_up", store="postgresql") == 1
    # The metrics token opens nothing else.
    refused = await api.get("/v1/sessions", headers=scraper)
    assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
    admin = {"Authorization": f"Bearer {TEST_TOKEN}"}
    assert (await api.get("/metrics", headers=admin)).status_code == 200
    # A tenant's token: the figures span every tenant.
    async with await tenant_client(
        httpx.AsyncClient(transport=api._transport, base_url="http://swarm.test", headers=admin),
        "acme",
        role="admin",
    ) as acme:
        tenant = await acme.get("/metrics")
    assert (tenant.status_code, tenant.json()["code"]) == (403, "global_token_required")
    # OpenMetrics when the scraper asks for it.
    openmetrics = await api.get(
        "/metrics", headers={**scraper, "Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


# -- figures read when scraped -------------------------------------------------------------


async def test_tasks_held_messages_lag_and_slots_are_read_when_scraped(
    api: httpx.AsyncClient, fresh: AppState, git_repo: Path, redis: Redis, keys: Keys
) -> None:
    state = fresh
    await live_worker(state.sessionmaker, slots=1, name="shell-1")
    await new_session(api, git_repo, [task("a"), task("b"), task("c")])
    assert await state.background.relay.publish_batch() == 2  # one slot and the headroom
    stream = keys.tasks("shell")
    now = await scrape(api)
    assert value(now, "swarm_tasks", agent="shell", status="queued") == 3
    assert value(now, "swarm_tasks", agent="claude", status="queued") == 0  # there, as 0
    assert value(now, "swarm_sessions", status="active") == 1
    assert value(now, "swarm_messages_held", stream=stream) == 1
    assert value(now, "swarm_adapters_live", agent="shell") == 1
    assert value(now, "swarm_slots", agent="shell") == 1
    assert value(now, "swarm_slots_free", agent="shell") == 0
    assert value(now, "swarm_agent_paused", agent="shell") == 0
    assert value(now, "swarm_stream_lag", stream=stream, group=ADAPTERS_GROUP) == 2
    assert value(now, "swarm_stream_pending", stream=stream, group=ADAPTERS_GROUP) == 0
    assert value(now, "swarm_store_up", store="redis") == 1
    # An adapter reads one message: one less waits, one is pending.
    await redis.xreadgroup(ADAPTERS_GROUP, "shell-1", {stream: ">"}, count=1)
    await dead_letter(redis, keys, stream=stream, entry_id="1-1", fields={}, reason="test")
    later = await scrape(api)
    assert value(later, "swarm_stream_lag", stream=stream, group=ADAPTERS_GROUP) == 1
    assert value(later, "swarm_stream_pending", stream=stream, group=ADAPTERS_GROUP) == 1
    assert value(later, "swarm_dead_letters_total") == value(now, "swarm_dead_letters_total") + 1


async def test_one_reading_serves_scrapes_for_a_moment(
    api: httpx.AsyncClient, state: AppState, git_repo: Path
) -> None:
    state.gauges.ttl_s = 3600
    before = await scrape(api)
    await new_session(api, git_repo, [task("a")])
    assert value(await scrape(api), "swarm_tasks", status="queued") == value(
        before, "swarm_tasks", status="queued"
    )
    state.gauges.ttl_s = 0
    assert value(await scrape(api), "swarm_tasks", status="queued") == 1


async def test_a_database_that_does_not_answer_leaves_its_figures_out(
    api: httpx.AsyncClient, fresh: AppState
) -> None:
    good = fresh.gauges.sessionmaker
    away = make_engine("postgresql+asyncpg://swarm@127.0.0.1:1/none")
    fresh.gauges.sessionmaker = make_sessionmaker(away)
    try:
        samples = await scrape(api)
    finally:
        fresh.gauges.sessionmaker = good
        await away.dispose()
    assert value(samples, "swarm_store_up", store="postgresql") == 0
    assert value(samples, "swarm_store_up", store="redis") == 1
    assert not [name for name, _ in samples if name == "swarm_tasks"]
    assert ("swarm_dead_letters_total", frozenset()) in samples  # Redis is still read


# -- counters moved by what is applied -----------------------------------------------------


class Moves:
    """What moved in the metrics since it was made (a test's baseline)."""

    def __init__(self, api: httpx.AsyncClient, before: Samples) -> None:
        self.api = api
        self.before = before

    @classmethod
    async def since_now(cls, api: httpx.AsyncClient) -> Moves:
        return cls(api, await scrape(api))

    async def __call__(self, name: str, **labels: str) -> float:
        return value(await scrape(self.api), name, **labels) - value(self.before, name, **labels)


def _mirror(workspace: Path, session: dict[str, Any]) -> Path:
    return workspace / "repos" / f"{session['id']}.git"


def _started(sid: str, task_id: uuid.UUID, attempt: int = 1, **extra: Any) -> TaskStarted:
    event = outcome_event(TaskStarted, sid, task_id, attempt, branch="b", base_commit="c", **extra)
    assert isinstance(event, TaskStarted)
    return event


async def test_attempts_retries_waits_and_run_times_count_once(
    api: httpx.AsyncClient, fresh: AppState, git_repo: Path
) -> None:
    state = fresh
    session = await new_session(api, git_repo, [task("a", max_attempts=2)])
    sid = session["id"]
    a = (await task_ids(api, sid))["a"]
    moved = await Moves.since_now(api)
    # An adapter that took the message over from a vanished one starts it.
    await apply(state.sessionmaker, state.keys, _started(sid, a, deliveries=2))
    assert await moved("swarm_attempt_queue_wait_seconds_count", agent="shell") == 1
    assert await moved("swarm_reclaims_total", stream="tasks") == 1
    failed = outcome_event(TaskFailed, sid, a, reason="exit_code", error="no")
    await apply(state.sessionmaker, state.keys, failed, "1-1")
    await apply(state.sessionmaker, state.keys, failed, "1-1")  # delivered twice: once
    gate = {"agent": "shell", "outcome": "failed", "reason": "exit_code"}
    assert await moved("swarm_attempts_total", **gate) == 1
    assert await moved("swarm_attempt_run_seconds_count", agent="shell", outcome="failed") == 1
    assert await moved("swarm_retries_total", agent="shell") == 0  # it waits for its back-off
    async with state.sessionmaker() as db, db.begin():
        await db.execute(update(Task).where(Task.id == a).values(retry_at=utcnow()))
    await state.background.sweep_once()
    assert await moved("swarm_retries_total", agent="shell") == 1
    await apply(state.sessionmaker, state.keys, _started(sid, a, 2))
    await apply(
        state.sessionmaker, state.keys, outcome_event(TaskSucceeded, sid, a, 2, exit_code=0)
    )
    assert await moved("swarm_attempts_total", outcome="succeeded", reason="none") == 1
    assert await moved("swarm_attempt_run_seconds_count", outcome="succeeded") == 1
    assert await moved("swarm_events_total", type="task.started", outcome="applied") == 0


async def test_merges_conflicts_checkpoints_and_rollbacks_count(
    api: httpx.AsyncClient, fresh: AppState, workspace: Path
) -> None:
    state = fresh
    repo = init_repo(workspace.parent / "p", {"shared.txt": "base\n"})
    session = await new_session(api, repo, [task("x"), task("y")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    moved = await Moves.since_now(api)
    for key, text in (("x", "one\n"), ("y", "two\n")):
        commit = mirror_commit(workspace, session, {"shared.txt": text})
        done = outcome_event(TaskSucceeded, sid, ids[key], exit_code=0, commit=commit)
        await apply(state.sessionmaker, state.keys, done)
    assert await state.background.merge_once() == 2
    assert await moved("swarm_merges_total", result="merged") == 1
    assert await moved("swarm_merges_total", result="conflict") == 1
    assert (await api.post(f"/v1/sessions/{sid}/checkpoints")).status_code == 202
    assert await state.background.checkpoints_once() == 1
    assert await moved("swarm_checkpoints_total", result="passed") == 1
    assert await moved("swarm_checkpoint_seconds_count", result="passed") == 1
    rolled = await api.post(f"/v1/sessions/{sid}/rollback", json={"checkpoint": 1})
    assert rolled.status_code == 200, rolled.text
    assert await moved("swarm_rollbacks_total") == 1


async def test_lost_attempts_silent_adapters_and_reclaimed_events_count(
    api: httpx.AsyncClient, fresh: AppState, git_repo: Path, redis: Redis, keys: Keys
) -> None:
    state = fresh
    sm = state.sessionmaker
    session = await new_session(api, git_repo, [task("a"), task("b")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    moved = await Moves.since_now(api)
    # An attempt whose worker went silent is lost, and runs again.
    await apply(sm, keys, _started(sid, ids["a"]))
    await apply(sm, keys, outcome_event(TaskProgress, sid, ids["a"], kind="message", text="hi"))
    async with sm() as db, db.begin():
        lost = await declare_lost(
            db, task_id=ids["a"], attempt=1, reason="test", keys=keys, policy=RetryPolicy()
        )
    assert lost
    assert await moved("swarm_attempts_lost_total", agent="shell") == 1
    assert await moved("swarm_attempts_total", agent="shell", outcome="lost") == 1
    assert await moved("swarm_retries_total", agent="shell") == 1
    # An adapter whose liveness key lapsed without a goodbye.
    await live_worker(sm, slots=1, name="shell-gone")
    async with sm() as db, db.begin():
        old = utcnow() - timedelta(minutes=5)
        await db.execute(update(Worker).where(Worker.name == "shell-gone").values(last_seen_at=old))
    async with sm() as db, db.begin():
        assert await fleet.mirror(db, []) == {"shell-gone"}
    assert await moved("swarm_adapters_lost_total", agent="shell") == 1
    # An orchestrator read an event and vanished: another takes it over and applies it.
    gone = EventConsumer(sessionmaker=sm, redis=redis, keys=keys, consumer="gone")
    await gone.setup()
    done = outcome_event(TaskSucceeded, sid, ids["b"], exit_code=0, commit="b" * 40)
    await redis.xadd(keys.events, await proven(sm, done))  # type: ignore[arg-type]
    await redis.xreadgroup(ORCHESTRATOR_GROUP, "gone", {keys.events: ">"}, count=10)
    survivor = EventConsumer(
        sessionmaker=sm, redis=redis, keys=keys, consumer="survivor", claim_idle_ms=0
    )
    assert await survivor.claim_stale() == 1
    assert await moved("swarm_reclaims_total", stream="events") == 1
    assert await moved("swarm_events_total", type="task.succeeded", outcome="applied") == 1
    # An entry that does not decode is dead-lettered.
    await redis.xadd(keys.events, {"env": b"not json"})
    assert await survivor.process() == 1
    assert await moved("swarm_events_total", type="other", outcome="dead") == 1
    assert await moved("swarm_dead_letters_total") == 1


def _usage_costing(usd: float) -> dict[str, int]:
    """Output tokens of `MODEL` that cost about `usd` by the built-in table."""
    per_token = PriceTable().cost("claude", MODEL, {"output": 1_000_000}).usd / 1_000_000
    return {"input": 1000, "cached_input": 400, "output": int(Decimal(str(usd)) / per_token)}


async def test_tokens_cost_and_budget_warnings_count_once(
    api: httpx.AsyncClient, fresh: AppState, git_repo: Path
) -> None:
    state = fresh
    claude = {"prompt": "Do it.", "agent": "claude", "model": MODEL}
    session = await new_session(
        api, git_repo, [task("a", **claude), task("b", **claude)], settings={"budget": {"usd": 1}}
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    moved = await Moves.since_now(api)
    usage = _usage_costing(0.85)
    result = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, usage=usage, model=MODEL)
    await apply(state.sessionmaker, state.keys, result, "1-1")
    await apply(state.sessionmaker, state.keys, result, "1-1")  # delivered twice: counted once
    async with state.sessionmaker() as db:
        cost = await db.scalar(select(Attempt.cost_usd).where(Attempt.task_id == ids["a"]))
    assert cost is not None and cost > 0
    assert await moved("swarm_tokens_total", agent="claude", type="output") == usage["output"]
    assert await moved("swarm_tokens_total", agent="claude", type="input") == 1000
    assert await moved("swarm_tokens_total", agent="claude", type="cached_input") == 400
    assert abs(await moved("swarm_cost_usd_total", agent="claude") - float(cost)) < 1e-6
    assert await moved("swarm_budget_warnings_total", limit="session.usd") == 1
    over = outcome_event(
        TaskSucceeded, sid, ids["b"], exit_code=0, usage=_usage_costing(0.3), model=MODEL
    )
    await apply(state.sessionmaker, state.keys, over)
    assert await moved("swarm_budget_exhausted_total", limit="session.usd") == 1


async def test_nothing_counts_before_the_commit_or_after_a_rollback(state: AppState) -> None:
    def rollbacks() -> float:
        return metrics.ROLLBACKS._value.get()

    start = rollbacks()
    async with state.sessionmaker() as db:
        async with db.begin():
            metrics.rolled_back(db)
            assert rollbacks() == start  # not yet: the transaction may roll back
        assert rollbacks() == start + 1
    with pytest.raises(RuntimeError):
        async with state.sessionmaker() as db, db.begin():
            metrics.rolled_back(db)
            raise RuntimeError("the transaction fails")
    async with state.sessionmaker() as db, db.begin():
        pass  # the same kind of session, committing nothing of the failed one
    assert rollbacks() == start + 1
    metrics.rolled_back(None)  # type: ignore[arg-type]  # outside a transaction: at once
    assert rollbacks() == start + 2


def test_label_values_stay_few() -> None:
    values = metrics._Values()
    assert values("gate_failed") == "gate_failed"
    assert values("lease expired: worker w went silent") == metrics.OTHER
    made = [values(f"reason_{n}") for n in range(metrics.MAX_LABEL_VALUES + 10)]
    assert made.count(metrics.OTHER) == 11  # gate_failed took one of the places
    assert values("gate_failed") == "gate_failed"  # the ones seen stay


# -- request ids ---------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the process logs, formatted as `swarm server` formats it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_request_ids_are_kept_or_made_and_carried_by_the_log_lines(
    api: httpx.AsyncClient, git_repo: Path, log_lines: io.StringIO
) -> None:
    body = {"title": "t", "repo": str(git_repo), "base_ref": "main"}
    made = await api.post("/v1/sessions", json=body, headers={"X-Request-ID": "req-42.a/b=c"})
    assert made.status_code == 201 and made.headers["x-request-id"] == "req-42.a/b=c"
    [line] = [x for x in log_lines.getvalue().splitlines() if "session created" in x]
    assert "request_id=req-42.a/b=c" in line and f"session_id={made.json()['id']}" in line
    # Without one, or with one that is not a short safe token, the server makes one.
    for given in ({}, {"X-Request-ID": "two words"}, {"X-Request-ID": "x" * 129}):
        answered = await api.get("/healthz", headers=given)
        assert re.fullmatch(r"[0-9a-f]{32}", answered.headers["x-request-id"]), given
    # Refused requests carry theirs too.
    refused = await api.get("/v1/sessions", headers={"Authorization": "", "X-Request-ID": "r1"})
    assert (refused.status_code, refused.headers["x-request-id"]) == (401, "r1")
    assert "request_id" not in [  # nothing leaks into lines written outside a request
        field.split("=")[0] for field in _last_fields(logging.getLogger("t"), log_lines)
    ]


def _last_fields(logger: logging.Logger, out: io.StringIO) -> list[str]:
    logger.warning("outside")
    return out.getvalue().splitlines()[-1].split()[4:]
