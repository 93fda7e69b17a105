"""Applying adapter events: fencing by attempt, duplicates, transitions, dependents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import (
    Began,
    TaskCancelled,
    TaskFailed,
    TaskHeartbeat,
    TaskProgress,
    TaskStarted,
    TaskSucceeded,
    WorkerOnline,
)
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Attempt, Event, Worker
from swarm_orchestrator.graph import scheduler
from swarm_orchestrator.graph.reports import Outcome
from tests.orchestrator.helpers import (
    apply,
    mirror_commit,
    new_session,
    outcome_event,
    task,
    task_ids,
    task_states,
)

SM = async_sessionmaker[AsyncSession]


async def test_a_task_runs_through_its_states_and_queues_its_dependents_once_merged(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    keys: Keys,
    state: AppState,
    workspace: Path,
) -> None:
    session = await new_session(api, git_repo, [task("a"), task("b", "a")])
    work = mirror_commit(workspace, session, {"f.txt": "a's work"})
    sid = session["id"]
    ids = await task_ids(api, sid)
    started = outcome_event(TaskStarted, sid, ids["a"], branch="x", base_commit="y")
    assert await apply(sessionmaker, keys, started) == Outcome.APPLIED
    assert (await task_states(api, sid))["a"] == ("running", 1)
    progress = outcome_event(TaskProgress, sid, ids["a"], kind="message", text="working")
    assert await apply(sessionmaker, keys, progress) == Outcome.APPLIED
    done = outcome_event(
        TaskSucceeded,
        sid,
        ids["a"],
        exit_code=0,
        commit=work,
        changed_files=["f.txt"],
        duration_s=1.5,
    )
    assert await apply(sessionmaker, keys, done) == Outcome.APPLIED
    # Succeeded, but its dependent waits until its work is in the integration branch.
    assert await task_states(api, sid) == {"a": ("succeeded", 1), "b": ("pending", 0)}
    assert (await api.get(f"/v1/tasks/{ids['a']}")).json()["merge_status"] == "pending"
    assert await state.background.merge_once() == 1
    assert await task_states(api, sid) == {"a": ("succeeded", 1), "b": ("queued", 1)}
    detail = (await api.get(f"/v1/tasks/{ids['a']}")).json()
    assert detail["result"]["commit"] == work
    assert detail["merge_status"] == "merged"
    child = (await api.get(f"/v1/tasks/{ids['b']}")).json()
    assert child["base_commit"] == detail["merge_commit"] != session["base_commit"]
    [attempt] = detail["attempts"]
    assert (attempt["status"], attempt["worker"], attempt["changed_files"]) == (
        "succeeded",
        "w-test",
        ["f.txt"],
    )
    timeline = [e["type"] for e in (await api.get(f"/v1/tasks/{ids['a']}/events")).json()]
    assert timeline == [
        "task.created",
        "task.queued",
        "task.started",
        "task.progress",
        "task.succeeded",
        "task.merged",
    ]


async def test_a_start_carried_in_a_result_is_applied_as_a_start_of_its_own(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    """One report for both (`Began`, a `noop` adapter's): the timeline, the attempt and the
    task show the start as the adapter stamped it, then the end; delivered again, nothing
    changes. A start that came on its own first is not applied twice; a result without one
    (an adapter that predates it) ends a queued attempt as before."""
    session = await new_session(
        api, git_repo, [task("a", agent="noop"), task("b", agent="noop"), task("c", agent="noop")]
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    began_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    began = Began(at=began_at, branch="swarm/a", base_commit="c0ffee", deliveries=2)
    done = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, began=began)
    assert await apply(sessionmaker, keys, done, envelope_id="env-a") == Outcome.APPLIED
    assert await apply(sessionmaker, keys, done, envelope_id="env-a") == Outcome.DUPLICATE
    events = (await api.get(f"/v1/tasks/{ids['a']}/events")).json()
    assert [e["type"] for e in events] == [
        "task.created",
        "task.queued",
        "task.started",
        "task.succeeded",
    ]
    started = events[2]
    assert started["data"]["at"] == began_at.isoformat()
    assert (started["data"]["branch"], started["data"]["base_commit"]) == ("swarm/a", "c0ffee")
    assert started["actor"] == "worker:w-test"
    detail = (await api.get(f"/v1/tasks/{ids['a']}")).json()
    assert detail["status"] == "succeeded"
    [attempt] = detail["attempts"]
    assert attempt["started_at"].startswith("2026-01-02T03:04:05")
    assert attempt["worker"] == "w-test"

    alone = outcome_event(TaskStarted, sid, ids["b"], branch="swarm/b", base_commit="c0ffee")
    assert await apply(sessionmaker, keys, alone) == Outcome.APPLIED
    again = outcome_event(TaskSucceeded, sid, ids["b"], exit_code=0, began=began)
    assert await apply(sessionmaker, keys, again) == Outcome.APPLIED
    plain = outcome_event(TaskSucceeded, sid, ids["c"], exit_code=0)
    assert await apply(sessionmaker, keys, plain) == Outcome.APPLIED
    for key, starts in (("b", 1), ("c", 0)):
        types = [e["type"] for e in (await api.get(f"/v1/tasks/{ids[key]}/events")).json()]
        assert types.count("task.started") == starts, (key, types)
        assert types[-1] == "task.succeeded"
    assert await task_states(api, sid) == dict.fromkeys("abc", ("succeeded", 1))


async def test_events_of_a_stale_attempt_are_ignored(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a", max_attempts=1)])
    sid = session["id"]
    ids = await task_ids(api, sid)
    failed = outcome_event(TaskFailed, sid, ids["a"], reason="exit_code", exit_code=1)
    assert await apply(sessionmaker, keys, failed) == Outcome.APPLIED
    retried = await api.post(f"/v1/tasks/{ids['a']}/retry")
    assert retried.status_code == 200 and retried.json()["attempt"] == 2
    # A late success of attempt 1 (a zombie worker, a re-delivery) changes nothing.
    late = outcome_event(TaskSucceeded, sid, ids["a"], attempt=1, exit_code=0, commit="d" * 40)
    assert await apply(sessionmaker, keys, late) == Outcome.STALE
    assert (await task_states(api, sid))["a"] == ("queued", 2)
    current = outcome_event(TaskStarted, sid, ids["a"], attempt=2, branch="b", base_commit="c")
    assert await apply(sessionmaker, keys, current) == Outcome.APPLIED
    assert (await task_states(api, sid))["a"] == ("running", 2)


async def test_a_message_applied_twice_counts_once(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    progress = outcome_event(TaskProgress, sid, ids["a"], kind="message", text="hello")
    assert await apply(sessionmaker, keys, progress, envelope_id="env-7") == Outcome.APPLIED
    assert await apply(sessionmaker, keys, progress, envelope_id="env-7") == Outcome.DUPLICATE
    async with sessionmaker() as db:
        rows = (await db.scalars(select(Event).where(Event.type == "task.progress"))).all()
    assert len(rows) == 1


async def test_a_failure_blocks_every_task_downstream(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    graph = [task("a"), task("b", "a"), task("c", "b"), task("d", "a"), task("e")]
    session = await new_session(api, git_repo, graph)
    sid = session["id"]
    ids = await task_ids(api, sid)
    failed = outcome_event(
        TaskFailed, sid, ids["a"], reason="exit_code", exit_code=3, error="exited with code 3"
    )
    assert await apply(sessionmaker, keys, failed) == Outcome.APPLIED
    states = await task_states(api, sid)
    assert {k: s for k, (s, _) in states.items()} == {
        "a": "failed",
        "b": "blocked",
        "c": "blocked",
        "d": "blocked",
        "e": "queued",
    }
    tasks = {t["key"]: t for t in (await api.get(f"/v1/sessions/{sid}/tasks")).json()}
    assert tasks["c"]["reason"] == "dependency a did not succeed"
    assert tasks["a"]["reason"] == "attempt 1 failed: exit_code"
    blocked = (await api.get(f"/v1/tasks/{ids['c']}/events")).json()[-1]
    assert (blocked["type"], blocked["data"]) == ("task.blocked", {"blocked_by": "a"})

    # Retrying the failed task gives it a new attempt and lets its dependents wait again.
    retried = await api.post(f"/v1/tasks/{ids['a']}/retry")
    assert retried.status_code == 200
    states = await task_states(api, sid)
    assert {k: s for k, (s, _) in states.items()} == {
        "a": "queued",
        "b": "pending",
        "c": "pending",
        "d": "pending",
        "e": "queued",
    }


async def test_failures_are_retried_with_backoff_until_max_attempts(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a", max_attempts=2)])
    sid = session["id"]
    ids = await task_ids(api, sid)
    first = outcome_event(TaskFailed, sid, ids["a"], reason="exit_code", exit_code=1)
    assert await apply(sessionmaker, keys, first) == Outcome.APPLIED
    detail = (await api.get(f"/v1/tasks/{ids['a']}")).json()
    assert detail["status"] == "pending" and detail["retry_at"] is not None
    # The sweep queues it once the retry time has passed.
    async with sessionmaker() as db, db.begin():
        await db.execute(text("UPDATE tasks SET retry_at = now() - interval '1 second'"))
    assert await scheduler.sweep(sessionmaker, keys=keys) == 1
    assert (await task_states(api, sid))["a"] == ("queued", 2)
    second = outcome_event(TaskFailed, sid, ids["a"], attempt=2, reason="exit_code", exit_code=1)
    assert await apply(sessionmaker, keys, second) == Outcome.APPLIED
    assert (await task_states(api, sid))["a"] == ("failed", 2)


async def test_an_attempt_its_worker_gave_up_runs_again(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    gave_up = outcome_event(TaskCancelled, sid, ids["a"], reason="adapter shutting down")
    assert await apply(sessionmaker, keys, gave_up) == Outcome.APPLIED
    assert (await task_states(api, sid))["a"] == ("queued", 2)
    detail = (await api.get(f"/v1/tasks/{ids['a']}")).json()
    assert [a["status"] for a in detail["attempts"]] == ["cancelled", "queued"]


async def test_cancelled_tasks_ignore_late_results_and_block_dependents(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a"), task("b", "a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    cancelled = await api.post(f"/v1/tasks/{ids['a']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    late = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, commit="e" * 40)
    assert await apply(sessionmaker, keys, late) == Outcome.IGNORED
    assert await task_states(api, sid) == {"a": ("cancelled", 1), "b": ("blocked", 0)}
    again = await api.post(f"/v1/tasks/{ids['a']}/cancel")
    assert (again.status_code, again.json()["code"]) == (409, "task_not_cancellable")
    not_retryable = await api.post(f"/v1/tasks/{ids['b']}/retry")
    assert (not_retryable.status_code, not_retryable.json()["code"]) == (409, "task_blocked")


async def test_a_finished_session_is_marked_done_once_its_work_is_merged(
    api: httpx.AsyncClient,
    git_repo: Path,
    sessionmaker: SM,
    keys: Keys,
    state: AppState,
    workspace: Path,
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    work = mirror_commit(workspace, session, {"a.txt": "a"})
    done = outcome_event(TaskSucceeded, sid, ids["a"], exit_code=0, commit=work)
    await apply(sessionmaker, keys, done)
    body = (await api.get(f"/v1/sessions/{sid}")).json()
    assert not body["done"] and body["finished_at"] is None  # still in the merge queue
    assert await state.background.merge_once() == 1
    body = (await api.get(f"/v1/sessions/{sid}")).json()
    assert body["done"] and body["finished_at"] is not None
    timeline = [e["type"] for e in (await api.get(f"/v1/sessions/{sid}/events")).json()]
    # Finished, it asks for its final checkpoint in the same transaction.
    assert timeline[-2:] == ["session.finished", "checkpoint.requested"]


async def test_heartbeats_and_workers(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    online = WorkerOnline(worker="w-test", agent="shell", host="h", pid=1, concurrency=2)
    assert await apply(sessionmaker, keys, online) == Outcome.APPLIED
    beat = outcome_event(TaskHeartbeat, sid, ids["a"])
    assert await apply(sessionmaker, keys, beat) == Outcome.APPLIED
    stale = outcome_event(TaskHeartbeat, sid, ids["a"], attempt=5)
    assert await apply(sessionmaker, keys, stale) == Outcome.STALE
    async with sessionmaker() as db:
        worker = await db.get(Worker, "w-test")
        attempt = await db.scalar(select(Attempt).where(Attempt.task_id == ids["a"]))
    assert worker is not None and worker.concurrency == 2
    assert attempt is not None and attempt.heartbeat_at is not None
    workers = (await api.get("/v1/workers")).json()
    assert [(w["name"], w["alive"]) for w in workers] == [("w-test", False)]


async def test_usage_cost_and_transcript_are_kept_on_the_attempt(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    done = outcome_event(
        TaskSucceeded,
        sid,
        ids["a"],
        exit_code=0,
        commit="a" * 40,
        usage={"input": 1200, "cached_input": 200, "output": 300},
        cost_usd=0.0123,
        transcript_path="artifacts/x/a/attempt-1/transcript.jsonl",
    )
    assert await apply(sessionmaker, keys, done) == Outcome.APPLIED
    [attempt] = (await api.get(f"/v1/tasks/{ids['a']}")).json()["attempts"]
    assert attempt["usage"] == {"input": 1200, "cached_input": 200, "output": 300}
    # A shell command costs nothing, whatever it claims; the claim is kept beside it.
    assert (attempt["agent"], float(attempt["cost_usd"])) == ("shell", 0)
    assert float(attempt["reported_cost_usd"]) == 0.0123
    assert attempt["transcript_path"] == "artifacts/x/a/attempt-1/transcript.jsonl"
    event = (await api.get(f"/v1/tasks/{ids['a']}/events")).json()[-1]
    assert event["data"]["usage"]["output"] == 300
    assert (event["data"]["cost_usd"], event["data"]["reported_cost_usd"]) == (0, 0.0123)


async def test_what_the_sandbox_refused_is_kept_on_the_attempt_and_its_timeline(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a"), task("b")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    refused = {"mode": "bwrap", "allowed": 2, "refused": 1, "refused_hosts": ["evil.test:443"]}
    quiet = {"mode": "bwrap", "allowed": 3, "refused": 0, "refused_hosts": []}
    for key, sandbox in (("a", refused), ("b", quiet)):
        done = outcome_event(TaskSucceeded, sid, ids[key], exit_code=0, sandbox=sandbox)
        assert await apply(sessionmaker, keys, done) == Outcome.APPLIED
    for key, sandbox in (("a", refused), ("b", quiet)):
        [attempt] = (await api.get(f"/v1/tasks/{ids[key]}")).json()["attempts"]
        assert attempt["sandbox"] == sandbox
    # The timeline says so when something was refused, and stays quiet otherwise.
    [a_done] = [
        e
        for e in (await api.get(f"/v1/tasks/{ids['a']}/events")).json()
        if e["type"] == "task.succeeded"
    ]
    assert a_done["data"]["sandbox"]["refused_hosts"] == ["evil.test:443"]
    b_events = (await api.get(f"/v1/tasks/{ids['b']}/events")).json()
    assert all("sandbox" not in e["data"] for e in b_events)


async def test_a_rate_limited_attempt_waits_for_the_reset_and_is_not_a_failure(
    api: httpx.AsyncClient, git_repo: Path, sessionmaker: SM, keys: Keys
) -> None:
    session = await new_session(api, git_repo, [task("a", max_attempts=1)])
    sid = session["id"]
    ids = await task_ids(api, sid)
    reset = datetime.now(UTC) + timedelta(seconds=90)
    limited = outcome_event(
        TaskFailed, sid, ids["a"], reason="rate_limited", error="429 rate limit", retry_at=reset
    )
    assert await apply(sessionmaker, keys, limited) == Outcome.APPLIED
    detail = (await api.get(f"/v1/tasks/{ids['a']}")).json()
    assert detail["status"] == "pending"  # max_attempts=1, yet it will run again
    assert [a["status"] for a in detail["attempts"]] == ["rate_limited"]
    retry_at = datetime.fromisoformat(detail["retry_at"])
    assert reset <= retry_at <= reset + timedelta(seconds=5)
    # A real failure afterwards still counts against max_attempts.
    async with sessionmaker() as db, db.begin():
        await db.execute(text("UPDATE tasks SET retry_at = now() - interval '1 second'"))
    assert await scheduler.sweep(sessionmaker, keys=keys) == 1
    failed = outcome_event(TaskFailed, sid, ids["a"], attempt=2, reason="exit_code", exit_code=1)
    assert await apply(sessionmaker, keys, failed) == Outcome.APPLIED
    assert (await task_states(api, sid))["a"] == ("failed", 2)
