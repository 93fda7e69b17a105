"""The owner of a session's state: the only code that changes a session's `status`, its
plan's `plan_status`, or marks it finished.

Each change is checked against `swarm_common.states.SESSION_TRANSITIONS` before anything is
stored and writes its timeline entry in the caller's transaction, which holds the session's
lock (`graph.locking`).

A session settles when its last task ends (`finish_or_reopen`, called by every change that
ends, retries or adds tasks): with every task succeeded and merged it takes a final
checkpoint of the integration head (`settings.checkpoint.on_finish`) and is `finalized` when
that passes (`checkpoint_ended`), or at once without one; with failures, or when the final
checkpoint fails, it waits in `awaiting_review` with its `review_reason`. A person may
`finish` a session whose tasks all ended, failures and all. Tasks added later reopen it
(a finalized one only when asked). Planner runs (tasks of kind `plan`) are no part of this.

`suspended` has three causes: a person's pause (`pause`/`resume`), and the system's, which
says why in `suspended_reason`: an agent kind its tasks need has no live adapter
(`suspend_for_fleet`, the kinds in `suspended_kinds`), or its budget or its tenant's is spent
(`suspend_for_budget`, the reason `budget_exhausted`). Each system suspension ends only by
its own cause (`resume_for_fleet` when the kinds are back, `resume_for_budget` when the
budget is raised), and a person's pause of it makes it the first.

A cancel is final at once (`cancel`): a session with tasks still to cancel says who asked
(`cancelling_by`) until the background has cancelled them (`cancel_completed`,
`graph.cancelling`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import utcnow
from swarm_common.session_settings import SessionSettings
from swarm_common.states import (
    PLAN_TRANSITIONS,
    SESSION_TRANSITIONS,
    TERMINAL_TASK_STATES,
    IllegalTransition,
    MergeStatus,
    PlanStatus,
    SessionStatus,
    TaskStatus,
    check_transition,
)
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Attempt, Checkpoint, Session, Task

__all__ = [
    "Tally",
    "activate",
    "archive",
    "await_review",
    "cancel",
    "cancel_completed",
    "checkpoint_ended",
    "create",
    "finish",
    "finish_or_reopen",
    "pause",
    "plan_approved",
    "plan_revised",
    "planning_failed",
    "planning_started",
    "reopen",
    "resume",
    "resume_after_review",
    "resume_for_budget",
    "resume_for_fleet",
    "suspend_for_budget",
    "suspend_for_fleet",
    "tally",
    "tasks_added",
]

MERGED_WELL = (MergeStatus.MERGED, MergeStatus.EMPTY, MergeStatus.RESOLVED, MergeStatus.DRY_RUN)
"""A succeeded task whose work is on the integration branch (or had nothing to merge, or
is a dry run's, which merges nothing and settles like merged work)."""
KEYS_NAMED = 3
"""Tasks a review reason names of each kind (how many there are is always said)."""
BUDGET_EXHAUSTED = "budget_exhausted"
"""The `suspended_reason` of a session whose budget (or its tenant's) is spent."""


def _move(
    db: AsyncSession,
    session: Session,
    to: SessionStatus,
    event: str,
    *,
    actor: str = "system",
    data: dict[str, Any] | None = None,
) -> None:
    check_transition(SESSION_TRANSITIONS, session.status, to, what=f"session {session.id}")
    session.status = to
    session.updated_at = utcnow()
    session.suspended_reason = None  # the system's suspensions set them after their move
    session.suspended_kinds = None
    if to == SessionStatus.ACTIVE:
        session.review_reason = None  # it runs again: nothing waits for a person
    timeline.record(db, session_id=session.id, type=event, actor=actor, data=data)


async def create(
    db: AsyncSession, *, has_tasks: bool, actor: str, data: dict[str, Any], **columns: Any
) -> Session:
    """A new session, `active` when it comes with tasks and `draft` until it has some."""
    session = Session(status=SessionStatus.ACTIVE if has_tasks else SessionStatus.DRAFT, **columns)
    db.add(session)
    await db.flush()  # the timeline entry refers to it
    timeline.record(db, session_id=session.id, type="session.created", actor=actor, data=data)
    return session


def activate(db: AsyncSession, session: Session, *, actor: str) -> None:
    """The session got new tasks: a draft becomes active (and the session is updated)."""
    if session.status == SessionStatus.DRAFT:
        _move(db, session, SessionStatus.ACTIVE, "session.activated", actor=actor)
    session.updated_at = utcnow()


def await_review(
    db: AsyncSession, session: Session, *, data: dict[str, Any], reason: str | None = None
) -> None:
    """A merge conflicted and a person decides: nothing new is queued meanwhile."""
    if session.status == SessionStatus.ACTIVE:
        session.review_reason = reason
        _move(
            db,
            session,
            SessionStatus.AWAITING_REVIEW,
            "session.awaiting_review",
            data={**data, **({"reason": reason} if reason else {})},
        )


async def resume_after_review(db: AsyncSession, session: Session, *, actor: str) -> bool:
    """awaiting_review → active once no conflict is left; True when it changed."""
    if session.status != SessionStatus.AWAITING_REVIEW or await _conflicts(db, session.id):
        return False
    _move(db, session, SessionStatus.ACTIVE, "session.resumed", actor=actor)
    return True


def pause(db: AsyncSession, session: Session, *, actor: str) -> None:
    """Queue nothing new until resumed; pausing a paused session changes nothing. A session
    the system suspended becomes a person's pause: it no longer resumes by itself."""
    if session.status == SessionStatus.SUSPENDED and session.suspended_reason is not None:
        was = session.suspended_reason
        session.suspended_reason = None
        session.suspended_kinds = None
        session.updated_at = utcnow()
        timeline.record(
            db,
            session_id=session.id,
            type="session.paused",
            actor=actor,
            data={"from": SessionStatus.SUSPENDED.value, "was": was},
        )
    elif session.status != SessionStatus.SUSPENDED:
        previous = session.status
        _move(
            db,
            session,
            SessionStatus.SUSPENDED,
            "session.paused",
            actor=actor,
            data={"from": previous},
        )


async def resume(db: AsyncSession, session: Session, *, actor: str) -> bool:
    """A paused session runs again (or waits for review, when a merge conflicted
    meanwhile); True when it changed. One whose tasks all ended meanwhile settles."""
    if session.status != SessionStatus.SUSPENDED:
        return False
    to = SessionStatus.AWAITING_REVIEW if await _conflicts(db, session.id) else SessionStatus.ACTIVE
    _move(db, session, to, "session.resumed", actor=actor, data={"to": to})
    if to == SessionStatus.ACTIVE and session.finished_at is not None:
        await finish_or_reopen(db, session)
    return True


def suspend_for_fleet(db: AsyncSession, session: Session, *, kinds: list[str], reason: str) -> bool:
    """An active session whose tasks need agent kinds that have had no live adapter for
    the grace period is `suspended` with `reason` (`graph.suspension`); it resumes by itself
    when they are back (`resume_for_fleet`). A system-suspended one whose missing kinds
    changed only gets the new reason. True when anything changed."""
    if session.status == SessionStatus.SUSPENDED and session.suspended_kinds is not None:
        if session.suspended_reason == reason and session.suspended_kinds == kinds:
            return False
        session.suspended_reason = reason
        session.suspended_kinds = kinds
        session.updated_at = utcnow()
        timeline.record(
            db,
            session_id=session.id,
            type="session.suspended",
            data={"reason": reason, "kinds": kinds},
        )
        return True
    if session.status != SessionStatus.ACTIVE:
        return False
    _move(
        db,
        session,
        SessionStatus.SUSPENDED,
        "session.suspended",
        data={"reason": reason, "kinds": kinds},
    )
    session.suspended_reason = reason
    session.suspended_kinds = kinds
    return True


async def resume_for_fleet(db: AsyncSession, session: Session, *, why: str) -> bool:
    """A session the system suspended (never one a person paused) runs again: the kinds it
    waited for have live adapters (or it needs them no more). True when it changed; the
    caller queues what is ready."""
    if session.status != SessionStatus.SUSPENDED or session.suspended_kinds is None:
        return False
    to = SessionStatus.AWAITING_REVIEW if await _conflicts(db, session.id) else SessionStatus.ACTIVE
    _move(db, session, to, "session.resumed", data={"to": to, "reason": why})
    if to == SessionStatus.ACTIVE and session.finished_at is not None:
        await finish_or_reopen(db, session)
    return True


def suspend_for_budget(db: AsyncSession, session: Session, *, data: dict[str, Any]) -> bool:
    """An active session whose budget, or its tenant's, is spent is `suspended` with the
    reason `budget_exhausted` (`graph.budgets`; `data`: what was spent of which limit); one
    the fleet suspended takes this reason instead (the fleet's return does not resume it).
    It resumes when the budget is raised (`resume_for_budget`). True when it changed."""
    data = {"reason": BUDGET_EXHAUSTED, **data}
    if session.status == SessionStatus.SUSPENDED and session.suspended_kinds is not None:
        session.suspended_kinds = None
        session.updated_at = utcnow()
        timeline.record(db, session_id=session.id, type="session.suspended", data=data)
    elif session.status == SessionStatus.ACTIVE:
        _move(db, session, SessionStatus.SUSPENDED, "session.suspended", data=data)
    else:
        return False
    session.suspended_reason = BUDGET_EXHAUSTED
    return True


async def resume_for_budget(
    db: AsyncSession, session: Session, *, actor: str, data: dict[str, Any]
) -> bool:
    """A session suspended for its budget (never one a person paused) runs again: the
    budget was raised above what is spent. True when it changed; the caller queues what is
    ready."""
    if session.status != SessionStatus.SUSPENDED or session.suspended_reason != BUDGET_EXHAUSTED:
        return False
    to = SessionStatus.AWAITING_REVIEW if await _conflicts(db, session.id) else SessionStatus.ACTIVE
    _move(
        db,
        session,
        to,
        "session.resumed",
        actor=actor,
        data={"to": to, "reason": "the budget was raised", **data},
    )
    if to == SessionStatus.ACTIVE and session.finished_at is not None:
        await finish_or_reopen(db, session)
    return True


def cancel(
    db: AsyncSession, session: Session, *, actor: str, tasks_cancelled: int, remaining: int = 0
) -> None:
    """The session is `cancelled`: nothing of it is queued or merged any more. `remaining`
    tasks of it have not been cancelled yet: the background cancels them
    (`graph.cancelling`), and the session says who asked (`cancelling_by`) until
    `cancel_completed`."""
    data: dict[str, Any] = {"tasks_cancelled": tasks_cancelled}
    if remaining:
        data["remaining"] = remaining
    _move(db, session, SessionStatus.CANCELLED, "session.cancelled", actor=actor, data=data)
    session.cancelling_by = actor if remaining else None


def cancel_completed(db: AsyncSession, session: Session, *, tasks_cancelled: int) -> None:
    """The background cancelled the last task of a cancelled session
    (`tasks_cancelled` in all, the answer's included)."""
    if session.cancelling_by is None:
        return
    actor = session.cancelling_by
    session.cancelling_by = None
    session.updated_at = utcnow()
    timeline.record(
        db,
        session_id=session.id,
        type="session.cancel_completed",
        actor=actor,
        data={"tasks_cancelled": tasks_cancelled},
    )


_DECIDED_ELSEWHERE = (TaskStatus.REVIEWING, TaskStatus.RACING)
"""States whose task waits on other tasks (its review run, its race's contenders), which
`finish_or_reopen` settles when those ended without deciding."""


async def tasks_added(db: AsyncSession, session: Session) -> None:
    """Pending tasks were added: a finished session is unfinished again, and a planning one
    may settle (`finish_or_reopen`). Else nothing changes: the session was not finished and
    is not now, and a new pending task decides no review or race."""
    if session.finished_at is not None or session.plan_status == PlanStatus.PLANNING:
        await finish_or_reopen(db, session)


async def finish_or_reopen(db: AsyncSession, session: Session) -> None:
    """Mark the session finished when its last task ended and every succeeded one is merged,
    and settle it (see the module's docstring); unfinished again when a task is retried or
    added (its open final checkpoint then settles nothing)."""
    if session.plan_status == PlanStatus.PLANNING:
        await _settle_planning(db, session)
    from swarm_orchestrator.graph import races, reviews  # they import this module

    waiting = set(
        await db.scalars(
            select(Task.status)
            .where(Task.session_id == session.id, Task.status.in_(_DECIDED_ELSEWHERE))
            .distinct()
        )
    )  # one probe for both, most sessions have neither
    if TaskStatus.REVIEWING in waiting:
        await reviews.settle(db, session)
    if TaskStatus.RACING in waiting:
        await races.settle(db, session)
    if session.finished_at is None and await _any_unended(db, session.id):
        return  # the common case, told by an index probe without counting the graph
    graph = await tally(db, session.id)
    now = utcnow()
    if graph.open == 0 and graph.total:
        if session.finished_at is None:
            session.finished_at = now
            session.updated_at = now
            timeline.record(
                db, session_id=session.id, type="session.finished", data={"counts": graph.counts}
            )
        if session.status == SessionStatus.ACTIVE:
            await _settle(db, session, graph)
    elif graph.open and session.finished_at is not None:
        session.finished_at = None
        session.updated_at = now
        from swarm_orchestrator.integration import checkpoints  # it imports this module

        await checkpoints.demote_final(db, session.id)


@dataclass(frozen=True)
class Tally:
    """A session's graph by state: its tasks of kind `work` (planner runs are no part of
    it)."""

    counts: dict[str, int]
    open: int
    """Tasks that have not ended, and succeeded ones waiting to merge or conflicted."""
    unsettled: int
    """Tasks that ended without their work on the integration branch: failed, blocked,
    cancelled, or succeeded with it abandoned or rolled back."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())


_UNENDED = sorted(set(TaskStatus) - TERMINAL_TASK_STATES)


async def _any_unended(db: AsyncSession, session_id: uuid.UUID) -> bool:
    """Whether a task of the session's graph has not ended (then `tally` would count it
    open): one probe of `ix_tasks_session_status`, where `tally` reads every task."""
    found = await db.scalar(
        select(Task.id)
        .where(
            Task.session_id == session_id,
            Task.status.in_(_UNENDED),
            Task.kind == "work",
        )
        .limit(1)
    )
    return found is not None


async def tally(db: AsyncSession, session_id: uuid.UUID) -> Tally:
    waiting = (MergeStatus.PENDING, MergeStatus.CONFLICT)
    rows = (
        await db.execute(
            select(
                Task.status,
                func.count(),
                func.count().filter(Task.merge_status.in_(waiting)),
                func.count().filter(Task.merge_status.in_(MERGED_WELL)),
            )
            .where(Task.session_id == session_id, Task.kind == "work")
            .group_by(Task.status)
        )
    ).all()
    counts = {status: n for status, n, _, _ in rows}
    unmerged = sum(w for status, _, w, _ in rows if status == TaskStatus.SUCCEEDED)
    merged = sum(m for status, _, _, m in rows if status == TaskStatus.SUCCEEDED)
    ended = sum(n for s, n in counts.items() if s in TERMINAL_TASK_STATES)
    return Tally(
        counts=counts,
        open=sum(n for s, n in counts.items() if s not in TERMINAL_TASK_STATES) + unmerged,
        unsettled=ended - unmerged - merged,
    )


async def _settle(db: AsyncSession, session: Session, graph: Tally) -> None:
    """An active session whose tasks all ended: review with failures, else the final
    checkpoint (once: an open one of the head is kept) or `finalized` at once."""
    if graph.unsettled:
        reason = await _unsettled_reason(db, session.id, graph)
        await_review(db, session, reason=reason, data={"counts": graph.counts})
        return
    from swarm_orchestrator.integration import checkpoints  # it imports this module

    if not _on_finish(session) or await checkpoints.head_verdict(db, session) == "passed":
        finalize(db, session, actor="system", data={"counts": graph.counts})
        return
    await checkpoints.request_final(db, session, actor="system")


def _on_finish(session: Session) -> bool:
    try:
        return SessionSettings.model_validate(session.settings or {}).checkpoint.on_finish
    except ValidationError:
        return True  # the default, as `integration.merges.session_settings` reads them


async def _unsettled_reason(db: AsyncSession, session_id: uuid.UUID, graph: Tally) -> str:
    """`2 of 5 tasks did not succeed: 1 failed (build), 1 blocked (test)`."""
    rows = (
        await db.execute(
            select(Task.key, Task.status, Task.merge_status)
            .where(
                Task.session_id == session_id,
                Task.kind == "work",
                Task.status.in_([s.value for s in TERMINAL_TASK_STATES]),
            )
            .order_by(Task.created_at, Task.key)
        )
    ).all()
    kinds: dict[str, list[str]] = {}
    for key, status, merge_status in rows:
        if status != TaskStatus.SUCCEEDED:
            kinds.setdefault(status, []).append(key)
        elif merge_status == MergeStatus.ROLLED_BACK:
            kinds.setdefault("rolled back", []).append(key)
        elif merge_status not in MERGED_WELL:
            kinds.setdefault("abandoned", []).append(key)
    parts = []
    for kind, keys in kinds.items():
        named = ", ".join(keys[:KEYS_NAMED]) + (" …" if len(keys) > KEYS_NAMED else "")
        parts.append(f"{len(keys)} {kind} ({named})")
    return f"{graph.unsettled} of {graph.total} tasks did not succeed and merge: " + ", ".join(
        parts
    )


def finalize(
    db: AsyncSession, session: Session, *, actor: str, data: dict[str, Any] | None = None
) -> None:
    """The session is done: its work is on the integration branch (and checked, when it
    takes final checkpoints). Its review reason, if any, stays as how it ended."""
    _move(db, session, SessionStatus.FINALIZED, "session.finalized", actor=actor, data=data)


def checkpoint_ended(db: AsyncSession, session: Session, checkpoint: Checkpoint) -> None:
    """A final checkpoint ended (the caller holds the session's lock): passed, the session
    is `finalized`; failed, it waits for review. One of an older head, or of a session that
    was reopened, cancelled or finalized meanwhile, settles nothing."""
    head = session.dry_run_head or session.integration_head or session.base_commit  # work_head
    if (
        not checkpoint.final
        or session.finished_at is None
        or checkpoint.commit != head
        or session.status in (SessionStatus.DRAFT, SessionStatus.FINALIZED, SessionStatus.CANCELLED)
    ):
        return
    data = {"checkpoint": checkpoint.number, "commit": checkpoint.commit}
    if checkpoint.status == "passed":
        finalize(db, session, actor=checkpoint.requested_by, data={**data, "tag": checkpoint.tag})
        return
    reason = f"final checkpoint {checkpoint.number} failed: {(checkpoint.error or '')[:500]}"
    session.review_reason = reason
    if session.status == SessionStatus.AWAITING_REVIEW:  # a person's finish of a reviewed one
        session.updated_at = utcnow()
        timeline.record(
            db,
            session_id=session.id,
            type="session.awaiting_review",
            data={**data, "reason": reason},
        )
    else:
        _move(
            db,
            session,
            SessionStatus.AWAITING_REVIEW,
            "session.awaiting_review",
            data={**data, "reason": reason},
        )


async def finish(db: AsyncSession, session: Session, *, actor: str) -> Checkpoint | None:
    """A person finishes a session whose tasks all ended (the caller checked that), failures
    and all: `finalized` at once, or once the final checkpoint it returns passes (taken when
    the session takes them and no checkpoint of the integration head passed; a final one of
    the head that failed is accepted). Finishing a finalized session changes nothing."""
    if session.status == SessionStatus.FINALIZED:
        return None
    from swarm_orchestrator.integration import checkpoints  # it imports this module

    if _on_finish(session) and await checkpoints.head_verdict(db, session) is None:
        return await checkpoints.request_final(db, session, actor=actor)
    finalize(db, session, actor=actor, data={"finished_by": actor})
    return None


async def reopen(db: AsyncSession, session: Session, *, actor: str) -> bool:
    """Tasks are added to a session that had settled: a finalized one (the caller checked
    that it was asked to) or one waiting for review with no conflict left runs again; True
    when it changed."""
    if session.status == SessionStatus.FINALIZED:
        _move(db, session, SessionStatus.ACTIVE, "session.reopened", actor=actor)
        return True
    if session.status == SessionStatus.AWAITING_REVIEW and not await _conflicts(db, session.id):
        _move(db, session, SessionStatus.ACTIVE, "session.reopened", actor=actor)
        return True
    return False


def archive(db: AsyncSession, session: Session, *, actor: str, archived: bool) -> bool:
    """Hide the session from lists (kept in full), or show it again; True when it changed."""
    if (session.archived_at is not None) == archived:
        return False
    now = utcnow()
    session.archived_at = now if archived else None
    session.updated_at = now
    event = "session.archived" if archived else "session.unarchived"
    timeline.record(db, session_id=session.id, type=event, actor=actor)
    return True


async def _conflicts(db: AsyncSession, session_id: uuid.UUID) -> int:
    return int(
        await db.scalar(
            select(func.count()).where(
                Task.session_id == session_id,
                Task.status == TaskStatus.SUCCEEDED,
                Task.merge_status == MergeStatus.CONFLICT,
            )
        )
        or 0
    )


# -- the plan of a draft session -----------------------------------------------------------


def _move_plan(
    db: AsyncSession,
    session: Session,
    to: PlanStatus,
    event: str,
    *,
    actor: str,
    data: dict[str, Any] | None = None,
) -> None:
    current = PlanStatus(session.plan_status) if session.plan_status else None
    check_transition(PLAN_TRANSITIONS, current, to, what=f"plan of session {session.id}")
    session.plan_status = to
    session.updated_at = utcnow()
    timeline.record(db, session_id=session.id, type=event, actor=actor, data=data)


def planning_started(db: AsyncSession, session: Session, *, actor: str, agent: str) -> None:
    """A planner (agent) is at work on the draft's plan."""
    if session.status != SessionStatus.DRAFT:
        raise IllegalTransition(f"session {session.id}: a {session.status} session is not planned")
    session.plan_error = None
    _move_plan(
        db, session, PlanStatus.PLANNING, "plan.planning", actor=actor, data={"agent": agent}
    )


def plan_revised(
    db: AsyncSession, session: Session, *, revision: int, actor: str, data: dict[str, Any]
) -> None:
    """A new revision of the plan waits for review."""
    session.plan_revision = revision
    session.plan_error = None
    _move_plan(
        db,
        session,
        PlanStatus.READY,
        "plan.revised",
        actor=actor,
        data={"revision": revision, **data},
    )


def planning_failed(
    db: AsyncSession, session: Session, *, error: str, actor: str = "system"
) -> None:
    session.plan_error = error
    _move_plan(
        db, session, PlanStatus.FAILED, "plan.failed", actor=actor, data={"error": error[:2000]}
    )


def plan_approved(db: AsyncSession, session: Session, *, actor: str) -> None:
    """The plan's tasks became the graph: the draft runs (`activate` follows)."""
    _move_plan(
        db,
        session,
        PlanStatus.APPROVED,
        "plan.approved",
        actor=actor,
        data={"revision": session.plan_revision},
    )


async def _settle_planning(db: AsyncSession, session: Session) -> None:
    """A planning run that ended without an answer (failed for good, cancelled, lost) fails
    the planning, so the draft does not wait for it forever."""
    newest = (
        await db.execute(
            select(Task.status, Task.reason, Attempt.error)
            .outerjoin(Attempt, and_(Attempt.task_id == Task.id, Attempt.number == Task.attempt))
            .where(Task.session_id == session.id, Task.kind == "plan")
            .order_by(Task.created_at.desc())
            .limit(1)
        )
    ).first()
    if newest is not None and newest.status in (
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.BLOCKED,
    ):
        reason = newest.reason or f"the planner's run was {newest.status}"
        planning_failed(db, session, error=f"{reason}: {newest.error}" if newest.error else reason)
