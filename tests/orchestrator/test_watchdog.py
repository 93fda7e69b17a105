"""The start-up watchdog, on the orchestrator's side: an attempt whose agent died before it
said anything (the adapter reports `startup_failed`), or whose worker went silent before its
first heartbeat (the reaper), is a failure and counts against the task's `max_attempts`, so a
crash loop ends; an attempt lost after it was heard from still counts against `max_lost`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import leases
from swarm_common.messages import TaskFailed, TaskHeartbeat, TaskProgress, TaskStarted, utcnow
from swarm_common.streams import Keys
from swarm_orchestrator.db.models import Outbox
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.graph.retry import STARTUP_FAILED, Cause, RetryPolicy, lost_as
from swarm_orchestrator.runtime.reaper import Reaper
from tests.orchestrator.helpers import (
    apply,
    count_rows,
    new_session,
    outcome_event,
    task,
    task_ids,
)

SM = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _reaper(sm: SM, redis: Redis, keys: Keys, **policy: Any) -> Reaper:
    """A reaper whose retries come at once (no back-off), so each pass shows the next step."""
    return Reaper(
        sessionmaker=sm, redis=redis, keys=keys, policy=RetryPolicy(backoff_base_s=0.0, **policy)
    )


async def _published(sm: SM, task_id: uuid.UUID, attempt: int) -> None:
    """The relay sent the attempt's task message (an adapter can claim only what it read)."""
    async with sm() as db, db.begin():
        await db.execute(
            update(Outbox)
            .where(Outbox.task_id == task_id, Outbox.attempt == attempt)
            .values(sent_at=utcnow())
        )


async def _expire(redis: Redis, keys: Keys, task_id: uuid.UUID, attempt: int) -> None:
    """A worker claimed the attempt, then fell silent for a whole lease."""
    claimed = await leases.claim(
        redis, keys, task_id=task_id, attempt=attempt, worker="w-dead", lease_s=60, claim_ttl_s=60
    )
    assert claimed
    assert await redis.delete(keys.lease(task_id, attempt)) == 1


async def _start(sm: SM, keys: Keys, sid: str, task_id: uuid.UUID, attempt: int) -> None:
    started = outcome_event(
        TaskStarted, sid, task_id, attempt=attempt, branch="b", base_commit="c" * 40
    )
    assert await apply(sm, keys, started) == Outcome.APPLIED


async def _detail(api: httpx.AsyncClient, task_id: uuid.UUID) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get(f"/v1/tasks/{task_id}")).json()
    return body


async def _entries(api: httpx.AsyncClient, sid: str, type: str) -> list[dict[str, Any]]:
    events = (await api.get(f"/v1/sessions/{sid}/events")).json()
    return [e for e in events if e["type"] == type]


async def test_a_worker_silent_from_the_start_fails_the_attempt_within_max_attempts(
    api: httpx.AsyncClient, git_repo: Path, redis: Redis, keys: Keys, sessionmaker: SM
) -> None:
    """With `max_attempts=2` the task fails after two attempts whose worker died before its
    first heartbeat, though `max_lost` (5) would have run it six times."""
    session = await new_session(api, git_repo, [task("a", max_attempts=2), task("b", "a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    reaper = _reaper(sessionmaker, redis, keys, max_lost=5)
    await redis.set(keys.epoch, "test")  # Redis is known: this is lease reaping, not recovery

    await _start(sessionmaker, keys, sid, ids["a"], 1)  # started, then never heard from
    await _expire(redis, keys, ids["a"], 1)
    assert await reaper.reap_once() == 1
    detail = await _detail(api, ids["a"])
    assert (detail["status"], detail["attempt"]) == ("queued", 2)
    first = detail["attempts"][0]
    assert (first["status"], first["reason"]) == ("failed", STARTUP_FAILED)
    assert "lease expired: worker w-dead went silent before its first heartbeat" in first["error"]
    # Should its worker still run it after all, it is told to stop.
    assert await count_rows(sessionmaker, Outbox, Outbox.kind == "cancel") == 1

    await _published(sessionmaker, ids["a"], 2)
    await _expire(redis, keys, ids["a"], 2)  # claimed, and gone before it even started
    assert await reaper.reap_once() == 1
    detail = await _detail(api, ids["a"])
    assert (detail["status"], detail["attempt"]) == ("failed", 2)
    assert detail["reason"] == f"attempt 2 failed: {STARTUP_FAILED}"
    assert [(x["number"], x["status"], x["reason"]) for x in detail["attempts"]] == [
        (1, "failed", STARTUP_FAILED),
        (2, "failed", STARTUP_FAILED),
    ]
    blocked = await _detail(api, ids["b"])
    assert blocked["status"] == "blocked"

    failed = await _entries(api, sid, "task.failed")
    said = [(e["attempt"], e["data"]["reason"], e["data"]["will_retry"]) for e in failed]
    assert said == [(1, STARTUP_FAILED, True), (2, STARTUP_FAILED, False)]
    assert all(e["data"]["worker"] == "w-dead" for e in failed)
    assert await _entries(api, sid, "attempt.lost") == []
    assert await reaper.reap_once() == 0


@pytest.mark.parametrize("heard", ["heartbeat", "progress"])
async def test_a_worker_lost_after_it_was_heard_from_still_counts_against_max_lost(
    api: httpx.AsyncClient,
    git_repo: Path,
    redis: Redis,
    keys: Keys,
    sessionmaker: SM,
    heard: str,
) -> None:
    """A worker killed mid-run (after a heartbeat or a progress report) is lost: no fault of
    the task's, so even a task of one attempt runs again."""
    session = await new_session(api, git_repo, [task("a", max_attempts=1)])
    sid = session["id"]
    a = (await task_ids(api, sid))["a"]
    reaper = _reaper(sessionmaker, redis, keys, max_lost=1)
    await redis.set(keys.epoch, "test")
    for number in (1, 2):
        await _start(sessionmaker, keys, sid, a, number)
        if heard == "heartbeat":
            news = outcome_event(TaskHeartbeat, sid, a, attempt=number)
        else:
            news = outcome_event(TaskProgress, sid, a, attempt=number, kind="message", text="hi")
        assert await apply(sessionmaker, keys, news) == Outcome.APPLIED
        await _expire(redis, keys, a, number)
        assert await reaper.reap_once() == 1

    detail = await _detail(api, a)
    assert (detail["status"], detail["attempt"]) == ("failed", 2)  # max_lost=1: lost twice
    assert detail["reason"].startswith("lost 2 times")
    assert [(x["status"], x["reason"]) for x in detail["attempts"]] == [
        ("lost", "lease expired: worker w-dead went silent"),
        ("lost", "lease expired: worker w-dead went silent"),
    ]
    lost = await _entries(api, sid, "attempt.lost")
    assert [(e["data"]["lost"], e["data"]["will_retry"]) for e in lost] == [(1, True), (2, False)]
    assert await _entries(api, sid, "task.failed") == []


async def test_a_startup_failure_the_adapter_reports_counts_against_max_attempts(
    api: httpx.AsyncClient, git_repo: Path, keys: Keys, sessionmaker: SM
) -> None:
    """The agent CLI died before its first event: its adapter says so with the CLI's last
    output, and the attempt counts like any failure."""
    session = await new_session(api, git_repo, [task("a", max_attempts=2)])
    sid = session["id"]
    a = (await task_ids(api, sid))["a"]
    error = "claude exited with code 127 before its first event; its last output: cannot run"
    failed = outcome_event(TaskFailed, sid, a, reason=STARTUP_FAILED, exit_code=127, error=error)
    assert await apply(sessionmaker, keys, failed) == Outcome.APPLIED

    detail = await _detail(api, a)
    assert (detail["status"], detail["attempt"]) == ("pending", 1)  # after a back-off
    assert detail["retry_at"] is not None
    [attempt] = detail["attempts"]
    assert (attempt["status"], attempt["reason"], attempt["error"]) == (
        "failed",
        STARTUP_FAILED,
        error,
    )
    [entry] = await _entries(api, sid, "task.failed")
    assert (entry["data"]["reason"], entry["data"]["error"]) == (STARTUP_FAILED, error)
    assert entry["data"]["will_retry"] is True


@pytest.mark.parametrize(
    ("lease_expired", "started_at", "heartbeat_at", "cause"),
    [
        (True, None, None, Cause.FAILED),  # claimed, never started nor heard from
        (True, T0, T0, Cause.FAILED),  # started (`heartbeat_at` is the start), no heartbeat
        (True, T0, T0 + timedelta(seconds=5), Cause.LOST),  # a heartbeat after the start
        (True, None, T0, Cause.LOST),  # a heartbeat, its start not applied yet
        (False, None, None, Cause.LOST),  # Redis forgot the claim: no fault of the task's
        (False, T0, T0, Cause.LOST),
    ],
)
def test_how_a_lost_attempt_counts(
    lease_expired: bool,
    started_at: datetime | None,
    heartbeat_at: datetime | None,
    cause: Cause,
) -> None:
    found = lost_as(lease_expired=lease_expired, started_at=started_at, heartbeat_at=heartbeat_at)
    assert found == cause
