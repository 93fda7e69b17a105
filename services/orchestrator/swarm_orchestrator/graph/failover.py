"""Failover between agent kinds: whether a task leaves the kind it runs on for the next of
its `fallback` kinds, and which.

A task may list `fallback: [codex, gemini]`. It moves when its kind cannot take it for
longer than its session's `settings.failover.max_wait_s`:

- an attempt ended rate limited or out of quota (the runners report both as
  `rate_limited`) and the reset is further away — or unknown: Claude Code never says when
  its limit resets, and a fallback at hand is not left idle on a guess;
- its kind is paused for its provider's limits (`graph.pauses`) until later than that;
- its kind has had no live adapter for the registry's grace period (`graph.suspension`
  moves it instead of suspending its session).

The next kind is the first after the current one in `[agent, *fallback]` (from the start
when the current kind is not listed: an `auto` task's) that has a live adapter and is not
paused; with none, the task stays and waits as `retry.decide` says. An `agent: auto` task
without a `fallback` list is routed again instead (`graph.routing`), without the kind that
refused it.

`decide` is pure. `shift` applies a move through `task_state.fail_over` (the task's kind,
a retry at once, the work to resume from, the context for the next prompt) and its
`task.failover` timeline entry `{from, to, reason, reset_at, wait_s, skipped}`; the caller
holds the task's locks and queues it (`scheduler.queue_ready`). The attempt that ended
left its work committed on the task's branch (the adapter's `wip:` commit, the result's
`commit`): the next attempt starts from it, and is told what the earlier agent said last.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import TaskFailed, utcnow
from swarm_common.session_settings import FailoverConfig, SessionSettings
from swarm_common.specs import AUTO_AGENT
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Attempt, Session, Task
from swarm_orchestrator.graph import fleet, pauses, routing, task_state
from swarm_orchestrator.graph.fleet import KindState
from swarm_orchestrator.graph.pauses import Pause, PausePolicy
from swarm_orchestrator.graph.retry import RetryPolicy

__all__ = [
    "LIMIT_REASONS",
    "MAX_FEEDBACK_CHARS",
    "Move",
    "NO_LIVE_ADAPTER",
    "PAUSED",
    "after_limit",
    "before_queue",
    "decide",
    "has_fallback",
    "max_wait_s",
    "order",
    "shift",
]

log = logging.getLogger(__name__)

LIMIT_REASONS = frozenset({"rate_limited"})
"""Failure reasons that mean the provider refused for a while (a runner reports an
exhausted quota as `rate_limited` too)."""
MAX_FEEDBACK_CHARS = 8000
"""The most the next attempt is told of the one before (the summary is cut first)."""
NO_LIVE_ADAPTER = "no_live_adapter"
PAUSED = "kind_paused"


@dataclass(frozen=True)
class Move:
    """A decision to move a task to another kind."""

    to: str | None
    """The kind it moves to; None: it stays (no kind to move to)."""
    was: str
    reason: str
    """`rate_limited`, `kind_paused` or `no_live_adapter`."""
    reset_at: datetime | None = None
    """When its kind takes work again, as far as known (a reset, the end of a pause)."""
    wait_s: float | None = None
    """How long that is from the decision; None: unknown."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Kinds passed over, with why."""

    def public(self) -> dict[str, Any]:
        """The timeline entry's data (`task.failover`)."""
        shown: dict[str, Any] = {
            "from": self.was,
            "to": self.to,
            "reason": self.reason,
            "reset_at": self.reset_at.isoformat() if self.reset_at else None,
            "wait_s": round(self.wait_s, 1) if self.wait_s is not None else None,
        }
        if self.skipped:
            shown["skipped"] = dict(self.skipped)
        return shown


def has_fallback(task: Task) -> bool:
    """Whether `task` may move to another kind at all."""
    return bool((task.spec or {}).get("fallback")) or routing.is_auto(task)


def order(spec: Mapping[str, Any]) -> list[str]:
    """The kinds a task may run on, in turn: its own (not `auto`), then its fallbacks."""
    kinds = [str(k) for k in spec.get("fallback") or ()]
    own = spec.get("agent")
    if isinstance(own, str) and own != AUTO_AGENT:
        kinds.insert(0, own)
    return list(dict.fromkeys(kinds))


def max_wait_s(session: Session) -> float:
    """The session's `settings.failover.max_wait_s` (its default for older sessions)."""
    try:
        return float(SessionSettings.model_validate(session.settings or {}).failover.max_wait_s)
    except ValidationError:
        return float(FailoverConfig().max_wait_s)


def decide(
    *,
    spec: Mapping[str, Any],
    role: str | None,
    current: str,
    reason: str,
    kinds: Mapping[str, KindState],
    now: datetime,
    max_wait_s: float,
    reset_at: datetime | None = None,
    prices: routing.RoutingPolicy | None = None,
) -> Move | None:
    """Whether a task on `current` moves, and where; None when it waits for its kind (the
    kind is back within `max_wait_s`, or the task has no other kind to go to). `reset_at`:
    the reset the provider reported, if any; a pause of `current` counts too. Pure."""
    kinds_in_turn = order(spec)
    auto = spec.get("agent") == AUTO_AGENT and not spec.get("fallback")
    if not auto and not [k for k in kinds_in_turn if k != current]:
        return None
    back_at = _back_at(reset_at, kinds.get(current), reason, now)
    wait_s = (back_at - now).total_seconds() if back_at is not None else None
    if reason != NO_LIVE_ADAPTER and wait_s is not None and wait_s <= max_wait_s:
        return None
    if auto:
        to, skipped = _reroute(spec, role, current, kinds, prices or routing.RoutingPolicy())
    else:
        to, skipped = _next(kinds_in_turn, current, kinds, now)
    return Move(to=to, was=current, reason=reason, reset_at=back_at, wait_s=wait_s, skipped=skipped)


def _back_at(
    reset_at: datetime | None, state: KindState | None, reason: str, now: datetime
) -> datetime | None:
    """When the kind takes work again: the later of the reported reset and its pause."""
    if reason == NO_LIVE_ADAPTER:
        return None
    if reset_at is not None and reset_at.tzinfo is None:
        reset_at = reset_at.replace(tzinfo=UTC)
    paused = state.paused_until if state is not None and state.paused_at(now) else None
    known = [at for at in (reset_at, paused) if at is not None]
    return max(known) if known else None


def _next(
    kinds_in_turn: Sequence[str], current: str, kinds: Mapping[str, KindState], now: datetime
) -> tuple[str | None, dict[str, str]]:
    """The first kind after `current` (all of them when it is not listed) that is live and
    not paused, and the kinds passed over with why."""
    start = kinds_in_turn.index(current) + 1 if current in kinds_in_turn else 0
    skipped: dict[str, str] = {}
    for kind in kinds_in_turn[start:]:
        state = kinds.get(kind)
        if state is None or not state.live:
            skipped[kind] = "no live adapter"
        elif state.paused_at(now):
            skipped[kind] = state.paused_text()
        else:
            return kind, skipped
    return None, skipped


def _reroute(
    spec: Mapping[str, Any],
    role: str | None,
    current: str,
    kinds: Mapping[str, KindState],
    prices: routing.RoutingPolicy,
) -> tuple[str | None, dict[str, str]]:
    """An `auto` task's next kind: routing's choice without the kind that refused it."""
    others = {k: s for k, s in kinds.items() if k != current}
    others[current] = KindState(kind=current)  # as if it had no live adapter
    choice = routing.choose(spec, role=role, kinds=others, policy=prices)
    skipped = {c.agent: c.ruled_out for c in choice.candidates if c.ruled_out}
    skipped[current] = "refused the last attempt"
    return choice.agent, {k: v for k, v in skipped.items() if v}


# -- applying a move -------------------------------------------------------------------------


def shift(
    db: AsyncSession,
    task: Task,
    move: Move,
    *,
    ended: task_state.Entry | None = None,
    attempt: Attempt | None = None,
    report: TaskFailed | None = None,
) -> None:
    """Move `task` to `move.to` at once (the caller holds its locks, has stopped a queued
    attempt, and queues it next). After a rate-limited `report`, the next attempt starts
    from the work it committed and is told what its agent said last; `ended` is the entry
    of the attempt that ended."""
    assert move.to is not None
    resume = task.resume_commit
    feedback = task.feedback
    if report is not None:
        base = attempt.base_commit if attempt is not None else None
        if report.commit and report.commit != base:  # it left work: go on from there
            resume = report.commit
        feedback = handover(move, report=report, resumed=resume is not None, earlier=feedback)
    task_state.fail_over(
        db,
        task,
        to=move.to,
        resume_commit=resume,
        feedback=feedback,
        data=move.public(),
        ended=ended,
    )
    log.warning(
        "task moved to another agent kind",
        extra={
            "task_id": str(task.id),
            "task_key": task.key,
            "from": move.was,
            "to": move.to,
            "reason": move.reason,
        },
    )


def handover(move: Move, *, report: TaskFailed, resumed: bool, earlier: str | None = None) -> str:
    """What the next attempt's prompt says of the one its provider stopped (and, kept
    after it, what that one was told: a reviewer's verdict, say)."""
    until = f" until {move.reset_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if move.reset_at else ""
    parts = [
        f"The previous attempt ran on {move.was} and was stopped before it finished: its "
        f"provider refused more work ({report.reason}{until}). You take the task over."
    ]
    if resumed:
        files = ", ".join(report.changed_files[:20])
        parts.append(
            "Its work so far is already in your worktree"
            + (f" ({files})" if files else "")
            + ": continue from it rather than starting again."
        )
    told = f"What it was told of the attempt before it:\n{earlier.strip()}" if earlier else ""
    summary = (report.transcript_summary or "").strip()
    if summary:
        room = MAX_FEEDBACK_CHARS - sum(len(p) + 2 for p in parts) - len(told) - 40
        parts.append("What it said last:\n" + summary[-max(room, 200) :])
    if told:
        parts.append(told)
    return "\n\n".join(parts)[:MAX_FEEDBACK_CHARS]


def before_queue(
    db: AsyncSession, *, session: Session, task: Task, kinds: Mapping[str, KindState]
) -> bool:
    """A pending task about to be queued on a paused kind moves on first (when the pause
    lasts longer than its session waits); whether it moved. Its locks are held."""
    state = kinds.get(task.agent)
    if state is None or not state.paused or not has_fallback(task):
        return False
    move = decide(
        spec=task.spec or {},
        role=task.role,
        current=task.agent,
        reason=PAUSED,
        kinds=kinds,
        now=utcnow(),
        max_wait_s=max_wait_s(session),
        prices=routing.policy_of(db),
    )
    if move is None or move.to is None:
        return False
    shift(db, task, move)
    return True


async def after_limit(
    db: AsyncSession,
    *,
    session: Session,
    task: Task,
    reset_at: datetime | None,
    policy: RetryPolicy,
    now: datetime,
    again: bool,
) -> Move | None:
    """A rate-limited attempt of `task` was reported (its report's transaction, locks held):
    count it against its kind (which may pause the kind, said on the task's timeline), then
    decide whether the task moves; None when it does not consider moving."""
    kind = task.agent
    pause = await pauses.record_limit(
        db,
        kind=kind,
        reset_at=reset_at,
        policy=PausePolicy(
            pause_after=policy.pause_after, window_s=policy.pause_window_s, pause_s=policy.pause_s
        ),
        now=now,
    )
    if pause is not None:
        _said_paused(db, task, pause)
    if not again or not has_fallback(task):
        return None
    return decide(
        spec=task.spec or {},
        role=task.role,
        current=kind,
        reason="rate_limited",
        kinds=await fleet.kinds(db),
        now=now,
        max_wait_s=max_wait_s(session),
        reset_at=reset_at,
        prices=routing.policy_of(db),
    )


def _said_paused(db: AsyncSession, task: Task, pause: Pause) -> None:
    timeline.record(
        db,
        session_id=task.session_id,
        task_id=task.id,
        attempt=task.attempt,
        type="kind.paused",
        data={"kind": pause.kind, "until": pause.until.isoformat(), "reason": pause.reason},
    )
