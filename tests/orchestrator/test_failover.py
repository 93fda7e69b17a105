"""Failover between agent kinds (`graph/failover.py`, `graph/pauses.py`): a task with
`fallback` kinds whose attempt was refused by its provider for longer than its session waits
moves to its next live kind that is not paused, at once, from the work the attempt left and
told what its agent said; a kind that keeps hitting limits is paused and its ready tasks
with fallbacks move; a task with none waits as before."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from swarm_common.capabilities import KIND_CAPABILITIES
from swarm_common.messages import TaskFailed, TaskStarted, WorkerOnline, utcnow
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Attempt, Event, KindPause, Outbox, Task
from swarm_orchestrator.graph import failover, fleet, suspension
from swarm_orchestrator.graph.failover import Move, decide
from swarm_orchestrator.graph.fleet import KindState
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.graph.routing import RoutingPolicy, choose
from tests.orchestrator.helpers import (
    apply,
    mirror_commit,
    new_session,
    outcome_event,
    task,
    task_ids,
    task_messages,
)

NOW = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
CLAUDE_FIRST: dict[str, Any] = {"agent": "claude", "fallback": ["codex", "gemini"]}


def kinds(*live: str, paused: dict[str, datetime] | None = None) -> dict[str, KindState]:
    """`live` kinds with one adapter each; `paused` ones paused until then."""
    every = ("claude", "codex", "gemini")
    return {
        k: KindState(
            kind=k,
            workers=1 if k in live else 0,
            slots=1 if k in live else 0,
            capabilities=KIND_CAPABILITIES[k],
            paused_until=(paused or {}).get(k),
            pause_reason="3 rate-limited attempts" if k in (paused or {}) else None,
        )
        for k in every
    }


def _decide(spec: dict[str, Any], **extra: Any) -> Move | None:
    args: dict[str, Any] = {
        "spec": spec,
        "role": None,
        "current": "claude",
        "reason": "rate_limited",
        "kinds": kinds("claude", "codex", "gemini"),
        "now": NOW,
        "max_wait_s": 300,
        "reset_at": NOW + timedelta(hours=1),
    }
    return decide(**{**args, **extra})


# -- the decision ------------------------------------------------------------------------------


def test_a_reset_further_than_the_wait_moves_the_task_to_its_next_kind() -> None:
    move = _decide(CLAUDE_FIRST)
    assert move is not None and move.to == "codex"
    assert move.public() == {
        "from": "claude",
        "to": "codex",
        "reason": "rate_limited",
        "reset_at": (NOW + timedelta(hours=1)).isoformat(),
        "wait_s": 3600.0,
    }


def test_a_reset_within_the_wait_keeps_the_task_on_its_kind() -> None:
    assert _decide(CLAUDE_FIRST, reset_at=NOW + timedelta(seconds=300)) is None
    assert _decide(CLAUDE_FIRST, reset_at=NOW + timedelta(seconds=301)) is not None
    assert _decide(CLAUDE_FIRST, max_wait_s=7200) is None


def test_an_unknown_reset_does_not_hold_a_task_that_has_somewhere_to_go() -> None:
    move = _decide(CLAUDE_FIRST, reset_at=None)  # Claude Code never says its reset
    assert move is not None and (move.to, move.wait_s, move.reset_at) == ("codex", None, None)


def test_a_task_without_fallback_kinds_never_moves() -> None:
    assert _decide({"agent": "claude"}) is None
    assert _decide({"agent": "claude", "fallback": ["claude"]}) is None


def test_kinds_without_a_live_adapter_or_paused_are_passed_over() -> None:
    move = _decide(CLAUDE_FIRST, kinds=kinds("claude", "gemini"))
    assert move is not None and move.to == "gemini"
    assert move.skipped == {"codex": "no live adapter"}

    later = NOW + timedelta(hours=2)
    move = _decide(CLAUDE_FIRST, kinds=kinds("claude", "codex", "gemini", paused={"codex": later}))
    assert move is not None and move.to == "gemini"
    assert move.skipped["codex"].startswith("paused until ")

    move = _decide(CLAUDE_FIRST, kinds=kinds("claude"))
    assert move is not None and move.to is None  # said, and it waits for its reset
    assert move.skipped == {"codex": "no live adapter", "gemini": "no live adapter"}


def test_the_next_kind_is_the_one_after_the_current_never_an_earlier_one() -> None:
    move = _decide(CLAUDE_FIRST, current="codex")
    assert move is not None and move.to == "gemini"
    move = _decide(CLAUDE_FIRST, current="gemini")
    assert move is not None and move.to is None
    # An auto-routed task's kind is not in its list: its fallbacks from the first.
    move = _decide({"agent": "auto", "fallback": ["gemini", "codex"]}, current="claude")
    assert move is not None and move.to == "gemini"


def test_a_paused_kind_or_one_gone_moves_its_tasks_by_the_same_rule() -> None:
    paused = kinds("claude", "codex", paused={"claude": NOW + timedelta(hours=1)})
    move = _decide(CLAUDE_FIRST, reason=failover.PAUSED, kinds=paused, reset_at=None)
    assert move is not None and (move.to, move.wait_s) == ("codex", 3600.0)
    soon = kinds("claude", "codex", paused={"claude": NOW + timedelta(seconds=60)})
    assert _decide(CLAUDE_FIRST, reason=failover.PAUSED, kinds=soon, reset_at=None) is None
    move = _decide(CLAUDE_FIRST, reason=failover.NO_LIVE_ADAPTER, kinds=kinds("codex"))
    assert move is not None and (move.to, move.wait_s) == ("codex", None)


def test_an_auto_task_is_routed_again_without_the_kind_that_refused_it() -> None:
    move = _decide({"agent": "auto"}, current="gemini")
    assert move is not None and move.to in ("claude", "codex")
    assert move.skipped["gemini"] == "refused the last attempt"
    move = _decide({"agent": "auto"}, current="gemini", kinds=kinds("gemini"))
    assert move is not None and move.to is None


def test_routing_sends_nothing_to_a_paused_kind() -> None:
    paused = kinds("claude", "codex", "gemini", paused={"gemini": utcnow() + timedelta(hours=1)})
    choice = choose({"agent": "auto"}, role=None, kinds=paused, policy=RoutingPolicy())
    assert choice.agent != "gemini"  # the cheapest, were it not paused
    [gemini] = [c for c in choice.candidates if c.agent == "gemini"]
    assert (gemini.ruled_out or "").startswith("is paused until ")


def test_the_next_prompt_hears_what_the_stopped_agent_said_and_was_told() -> None:
    move = _decide(CLAUDE_FIRST)
    assert move is not None
    report = TaskFailed(
        session_id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        attempt=2,
        worker="claude-1",
        reason="rate_limited",
        changed_files=["api.py"],
        transcript_summary="- " + "x" * 3900 + " the handler is half done",
    )
    told = "The reviewer said: add a test for /health."
    text = failover.handover(move, report=report, resumed=True, earlier=told)
    assert text.startswith("The previous attempt ran on claude and was stopped")
    assert "already in your worktree (api.py)" in text
    assert "the handler is half done" in text and text.endswith(told)
    assert len(text) <= failover.MAX_FEEDBACK_CHARS
    fresh = failover.handover(move, report=report, resumed=False)
    assert "worktree" not in fresh and "told" not in fresh


# -- applied to reports ------------------------------------------------------------------------


async def _online(state: AppState, *agents: str) -> None:
    for agent in agents:
        online = WorkerOnline(worker=f"{agent}-1", agent=agent, host="h", pid=1, concurrency=2)
        assert await apply(state.sessionmaker, state.keys, online) == Outcome.APPLIED


async def _entries(state: AppState, task_id: uuid.UUID, type: str) -> list[dict[str, Any]]:
    async with state.sessionmaker() as db:
        rows = await db.scalars(
            select(Event.data)
            .where(Event.task_id == task_id, Event.type == type)
            .order_by(Event.id)
        )
        return list(rows.all())


async def _task(state: AppState, task_id: uuid.UUID) -> Task:
    async with state.sessionmaker() as db:
        found = await db.get(Task, task_id)
        assert found is not None
        return found


def _limited(sid: str, task_id: uuid.UUID, attempt: int = 1, **fields: Any) -> TaskFailed:
    event = outcome_event(
        TaskFailed, sid, task_id, attempt, reason="rate_limited", error="429", **fields
    )
    assert isinstance(event, TaskFailed)
    return event


async def test_a_rate_limited_attempt_moves_on_at_once_from_its_work_with_its_last_words(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, keys: Keys, workspace: Path
) -> None:
    await _online(state, "claude", "codex")
    session = await new_session(api, git_repo, [task("a", prompt="Write it", **CLAUDE_FIRST)])
    sid = session["id"]
    ids = await task_ids(api, sid)
    started = outcome_event(TaskStarted, sid, ids["a"], branch="x", base_commit="y")
    assert await apply(state.sessionmaker, keys, started) == Outcome.APPLIED
    wip = mirror_commit(workspace, session, {"first.txt": "half done\n"})
    reset = utcnow() + timedelta(hours=1)
    limited = _limited(
        sid,
        ids["a"],
        retry_at=reset,
        commit=wip,
        changed_files=["first.txt"],
        transcript_summary="- I wrote first.txt; next I add the tests.",
    )
    assert await apply(state.sessionmaker, keys, limited, "ev-limited") == Outcome.APPLIED

    moved = await _task(state, ids["a"])
    assert (moved.status, moved.agent, moved.attempt, moved.retry_at) == (
        "queued",
        "codex",
        2,
        None,
    )
    first, second = await task_messages(state.sessionmaker, ids["a"])
    assert (first.agent, second.agent) == ("claude", "codex")
    assert second.base_commit == wip  # on top of the work the limited attempt committed
    assert second.feedback is not None
    assert "ran on claude" in second.feedback and "first.txt" in second.feedback
    assert "next I add the tests" in second.feedback
    async with state.sessionmaker() as db:
        targets = (await db.scalars(select(Outbox.target).where(Outbox.kind == "xadd"))).all()
        statuses = (
            await db.scalars(
                select(Attempt.status).where(Attempt.task_id == ids["a"]).order_by(Attempt.number)
            )
        ).all()
    assert targets[-1] == keys.tasks("codex")
    assert list(statuses) == ["rate_limited", "queued"]
    [entry] = await _entries(state, ids["a"], "task.failover")
    assert (entry["from"], entry["to"], entry["reason"]) == ("claude", "codex", "rate_limited")
    assert datetime.fromisoformat(entry["reset_at"]) == reset
    assert 3500 < entry["wait_s"] <= 3600
    [failed] = await _entries(state, ids["a"], "task.failed")
    assert failed["will_retry"] is True and "failover" not in failed

    # The same report delivered again moves nothing more.
    assert await apply(state.sessionmaker, keys, limited, "ev-limited") == Outcome.DUPLICATE
    assert len(await _entries(state, ids["a"], "task.failover")) == 1
    assert (await _task(state, ids["a"])).attempt == 2
    async with state.sessionmaker() as db:
        pause = await db.get(KindPause, "claude")
    assert pause is not None and len(pause.hits) == 1 and pause.paused_until is None


async def test_a_reset_within_the_wait_or_no_live_fallback_keeps_the_task_waiting(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, keys: Keys
) -> None:
    await _online(state, "claude")
    session = await new_session(
        api, git_repo, [task("soon", **CLAUDE_FIRST), task("later", **CLAUDE_FIRST)]
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    reset = utcnow() + timedelta(seconds=60)
    assert await apply(state.sessionmaker, keys, _limited(sid, ids["soon"], retry_at=reset)) == (
        Outcome.APPLIED
    )
    soon = await _task(state, ids["soon"])
    assert (soon.status, soon.agent) == ("pending", "claude")
    assert soon.retry_at is not None and soon.retry_at >= reset
    assert await _entries(state, ids["soon"], "task.failover") == []

    far = utcnow() + timedelta(hours=1)  # but neither codex nor gemini has an adapter
    assert await apply(state.sessionmaker, keys, _limited(sid, ids["later"], retry_at=far)) == (
        Outcome.APPLIED
    )
    later = await _task(state, ids["later"])
    assert (later.status, later.agent) == ("pending", "claude")
    [failed] = await _entries(state, ids["later"], "task.failed")
    assert failed["failover"]["to"] is None
    assert failed["failover"]["skipped"] == {
        "codex": "no live adapter",
        "gemini": "no live adapter",
    }


async def test_a_kind_that_keeps_hitting_limits_is_paused_and_its_ready_tasks_move(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, keys: Keys
) -> None:
    await _online(state, "claude", "codex")
    session = await new_session(
        api,
        git_repo,
        [
            task("waiting", **CLAUDE_FIRST),  # limited with a short reset: waits for claude
            task("queued", **CLAUDE_FIRST),  # queued on claude, never started
            task("l1", agent="claude"),
            task("l2", agent="claude"),
        ],
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    soon, far = utcnow() + timedelta(seconds=60), utcnow() + timedelta(hours=1)
    for key, reset in (("waiting", soon), ("l1", far)):
        event = _limited(sid, ids[key], retry_at=reset)
        assert await apply(state.sessionmaker, keys, event) == Outcome.APPLIED
    async with state.sessionmaker() as db:
        assert not (await fleet.kinds(db))["claude"].paused
    assert (await _task(state, ids["waiting"])).status == "pending"

    # The third limit within the window pauses claude until the latest reset said.
    assert await apply(state.sessionmaker, keys, _limited(sid, ids["l2"], retry_at=far)) == (
        Outcome.APPLIED
    )
    [paused] = await _entries(state, ids["l2"], "kind.paused")
    assert paused["kind"] == "claude" and paused["reason"].startswith("3 rate-limited attempts")
    async with state.sessionmaker() as db:
        claude = (await fleet.kinds(db))["claude"]
    assert claude.paused and claude.paused_until is not None
    assert abs((claude.paused_until - far).total_seconds()) < 1
    shown = {w["agent"]: w for w in (await api.get("/v1/workers")).json()}
    assert shown["claude"]["kind_paused_until"] is not None
    assert shown["claude"]["kind_pause_reason"] == claude.pause_reason
    assert shown["codex"]["kind_paused_until"] is None

    # The registry's pass moves its ready tasks with fallbacks; the others wait.
    outcome = await suspension.check(state.sessionmaker, keys=keys, grace_s=60)
    assert outcome.failed_over == 2 and outcome.suspended == 0
    for key in ("waiting", "queued"):
        moved = await _task(state, ids[key])
        assert (moved.status, moved.agent, moved.attempt) == ("queued", "codex", 2), key
        [entry] = await _entries(state, ids[key], "task.failover")
        assert (entry["from"], entry["to"], entry["reason"]) == ("claude", "codex", "kind_paused")
    async with state.sessionmaker() as db:
        cancelled = await db.scalar(
            select(Attempt.status).where(Attempt.task_id == ids["queued"], Attempt.number == 1)
        )
    assert cancelled == "cancelled"  # the queued attempt on claude, asked to stop too
    for key in ("l1", "l2"):
        assert (await _task(state, ids[key])).agent == "claude"
    assert (await suspension.check(state.sessionmaker, keys=keys, grace_s=60)).failed_over == 0

    # A task with fallbacks that becomes ready while claude is paused goes to codex at once.
    more = await api.post(f"/v1/sessions/{sid}/tasks", json=[task("fresh", **CLAUDE_FIRST)])
    assert more.status_code == 201, more.text
    fresh_id = (await task_ids(api, sid))["fresh"]
    fresh = await _task(state, fresh_id)
    assert (fresh.status, fresh.agent, fresh.attempt) == ("queued", "codex", 1)
    [message] = await task_messages(state.sessionmaker, fresh_id)
    assert message.agent == "codex"


@pytest.mark.parametrize("hits_apart_s,paused", [(100, True), (400, False)])
async def test_only_limits_within_the_window_pause_a_kind(
    state: AppState, hits_apart_s: float, paused: bool
) -> None:
    from swarm_orchestrator.graph.pauses import PausePolicy, record_limit

    policy = PausePolicy(pause_after=3, window_s=600, pause_s=120)
    start = utcnow()
    found = None
    async with state.sessionmaker() as db, db.begin():
        for i in range(3):
            at = start + timedelta(seconds=i * hits_apart_s)
            found = await record_limit(db, kind="gemini", reset_at=None, policy=policy, now=at)
    assert (found is not None) == paused
    if found is not None:  # no reset said: paused for pause_s from the last limit
        assert found.new and found.until == start + timedelta(seconds=2 * hits_apart_s + 120)


async def test_a_queued_task_on_a_kind_gone_moves_instead_of_suspending_its_session(
    api: httpx.AsyncClient, git_repo: Path, state: AppState, keys: Keys
) -> None:
    await _online(state, "codex")  # and no claude adapter, ever
    session = await new_session(
        api, git_repo, [task("a", **CLAUDE_FIRST), task("b", agent="claude")]
    )
    ids = await task_ids(api, session["id"])
    outcome = await suspension.check(state.sessionmaker, keys=keys, grace_s=0)
    assert outcome.failed_over == 1
    moved = await _task(state, ids["a"])
    assert (moved.status, moved.agent, moved.attempt) == ("queued", "codex", 2)
    [entry] = await _entries(state, ids["a"], "task.failover")
    assert (entry["reason"], entry["wait_s"]) == ("no_live_adapter", None)
    # b has nowhere to go: its session is suspended for it, as before.
    shown = (await api.get(f"/v1/sessions/{session['id']}")).json()
    assert (shown["status"], shown["suspended_reason"]) == (
        "suspended",
        "no live claude adapter ever",
    )
