"""Agents that delegate: the owner of `task_proposals`, the follow-up tasks handoffs
propose, and of what becomes of them under the session's `settings.delegation`.

A proposal is checked when its handoff arrives (`consider`, from `graph.blackboard`): with
policy `off` it is refused; a proposal of a task that was itself delegated is one level
deeper, and past `max_depth` it is refused, as are those past `max_per_task` of one task
and those that would make no valid task (a key in use, an unknown dependency). The rest
wait for a person (`approve`, the default) or become tasks at once (`auto`). A proposed task
always depends on its proposer (so it runs on its work, after it merged) and on the tasks
it names. Tasks are made only by `task_state.create_graph`, as any added graph; the new
task's timeline says who proposed it (`task.delegated`), the proposer's says what it
proposed and what became of it (`task.proposed`).

A report is applied once (`graph.reports`), and a proposal is stored once per task and
place in its handoff (a unique constraint), so a duplicate delivery makes nothing twice;
accepting locks the session and the proposal first, so two people accepting at once make
one task.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.handoffs import Proposal
from swarm_common.messages import utcnow
from swarm_common.session_settings import DelegationConfig, SessionSettings
from swarm_common.specs import MAX_KEY_CHARS, TaskSpec
from swarm_common.states import SessionStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Session, Task, TaskProposal
from swarm_orchestrator.errors import Conflict, NotFound
from swarm_orchestrator.graph import session_state, task_state
from swarm_orchestrator.graph.locking import lock_session

__all__ = ["accept", "consider", "list_proposals", "proposed_before", "refuse"]

PROPOSED, ACCEPTED, REFUSED = "proposed", "accepted", "refused"


def policy_of(session: Session) -> DelegationConfig:
    try:
        return SessionSettings.model_validate(session.settings).delegation
    except ValidationError:
        return DelegationConfig()


async def depth_of(db: AsyncSession, task: Task) -> int:
    """0 for a task people gave; a delegated task's proposal's depth."""
    depth = await db.scalar(
        select(TaskProposal.depth).where(TaskProposal.created_task_id == task.id)
    )
    return depth or 0


async def proposed_before(db: AsyncSession, *, task: Task) -> bool:
    """Whether an earlier attempt of `task` made proposals already."""
    found = await db.scalar(select(TaskProposal.id).where(TaskProposal.task_id == task.id).limit(1))
    return found is not None


async def consider(
    db: AsyncSession,
    *,
    session: Session,
    task: Task,
    proposals: Sequence[Proposal],
    actor: str,
) -> list[TaskProposal]:
    """Store the proposals of `task`'s handoff, each `proposed` or `refused` with the reason;
    under `auto`, make the proposed ones tasks. The caller holds the session's lock."""
    policy = policy_of(session)
    depth = await depth_of(db, task) + 1
    keys = set((await db.scalars(select(Task.key).where(Task.session_id == session.id))).all())
    rows = []
    for number, proposal in enumerate(proposals, start=1):
        spec = _spec(proposal, task, taken=keys)
        taken = spec["key"] in keys
        keys.add(spec["key"])
        reason = _refusal(policy, depth=depth, number=number, task=task) or (
            f"the session has a task {spec['key']} already" if taken else _invalid(spec, keys)
        )
        row = TaskProposal(
            session_id=session.id,
            task_id=task.id,
            number=number,
            key=spec["key"],
            spec=spec,
            depth=depth,
            status=REFUSED if reason else PROPOSED,
            reason=reason,
            decided_by="delegation" if reason else None,
            decided_at=utcnow() if reason else None,
            created_at=utcnow(),
        )
        db.add(row)
        rows.append(row)
        timeline.record(
            db,
            session_id=session.id,
            task_id=task.id,
            attempt=task.attempt,
            type="task.proposed",
            actor=actor,
            data={
                "key": spec["key"],
                "title": spec["title"],
                "proposed_by": task.key,
                "depth": depth,
                "status": row.status,
                **({"reason": reason} if reason else {"policy": policy.policy}),
            },
        )
    await db.flush()
    if policy.policy == "auto":
        for row in rows:
            if row.status == PROPOSED:
                await _make_task(db, session=session, proposal=row, actor="delegation:auto")
    return rows


def _refusal(policy: DelegationConfig, *, depth: int, number: int, task: Task) -> str | None:
    if policy.policy == "off":
        return "delegation is off in this session (settings.delegation)"
    if depth > policy.max_depth:
        return (
            f"too deep: a follow-up of {task.key} would be delegated {depth} levels down, "
            f"past the session's limit of {policy.max_depth} (settings.delegation.max_depth)"
        )
    if number > policy.max_per_task:
        return (
            f"too many: {task.key} may propose {policy.max_per_task} follow-ups "
            "(settings.delegation.max_per_task)"
        )
    return None


def _spec(proposal: Proposal, task: Task, *, taken: set[str]) -> dict[str, Any]:
    """The task a proposal would be: its key (from its title when it gives none; made unique
    in the session), depending on its proposer and the tasks it names."""
    key = proposal.key or _slug(proposal.title)
    if proposal.key is None:
        base, n = key, 2
        while key in taken:
            suffix = f"-{n}"
            key, n = base[: MAX_KEY_CHARS - len(suffix)] + suffix, n + 1
    spec: dict[str, Any] = {
        "key": key,
        "title": proposal.title,
        "prompt": proposal.prompt,
        "agent": proposal.agent or task.agent,
        "depends_on": list(dict.fromkeys([task.key, *proposal.depends_on])),
    }
    if proposal.role:
        spec["role"] = proposal.role
    return spec


def _slug(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48].strip("-")
    return slug or "follow-up"


def _invalid(spec: dict[str, Any], keys: set[str]) -> str | None:
    """Why the proposal makes no valid task of the session (`keys`: the session's task keys
    and the keys proposed before it)."""
    try:
        TaskSpec.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"invalid: {where}: {first.get('msg')}"[:500]
    unknown = [d for d in spec["depends_on"] if d not in keys]
    if unknown:
        return "depends on tasks the session does not have: " + ", ".join(unknown[:10])
    return None


async def _make_task(
    db: AsyncSession, *, session: Session, proposal: TaskProposal, actor: str
) -> uuid.UUID | None:
    """The proposal as a task of the session (refused instead when its key was taken
    meanwhile)."""
    existing = dict(
        (await db.execute(select(Task.key, Task.id).where(Task.session_id == session.id))).all()
    )
    spec = TaskSpec.model_validate(proposal.spec)
    missing = [d for d in spec.depends_on if d not in existing]
    if spec.key in existing or missing:
        why = "its key is taken" if spec.key in existing else f"missing {', '.join(missing)}"
        _decide(proposal, REFUSED, by=actor, reason=f"cannot become a task: {why}")
        return None
    [task_id] = await task_state.create_graph(
        db,
        session=session,
        specs=[spec],
        existing=existing,
        actor=actor,
    )
    _decide(proposal, ACCEPTED, by=actor)
    proposal.created_task_id = task_id
    proposer = await db.scalar(select(Task.key).where(Task.id == proposal.task_id))
    timeline.record(
        db,
        session_id=session.id,
        task_id=task_id,
        type="task.delegated",
        actor=actor,
        data={"proposed_by": proposer, "proposal": proposal.id, "depth": proposal.depth},
    )
    await db.flush()
    return task_id


def _decide(proposal: TaskProposal, status: str, *, by: str, reason: str | None = None) -> None:
    proposal.status = status
    proposal.reason = reason
    proposal.decided_by = by
    proposal.decided_at = utcnow()


# -- a person decides ----------------------------------------------------------------------


async def list_proposals(
    db: AsyncSession, *, session_id: uuid.UUID, status: str | None = None
) -> list[TaskProposal]:
    stmt = select(TaskProposal).where(TaskProposal.session_id == session_id)
    if status is not None:
        stmt = stmt.where(TaskProposal.status == status)
    return list(await db.scalars(stmt.order_by(TaskProposal.id)))


async def _lock_proposal(
    db: AsyncSession, *, session_id: uuid.UUID, proposal_id: int
) -> tuple[Session, TaskProposal]:
    """Lock the session (not a cancelled one; a finalized one runs again when a follow-up
    is accepted), then the proposal, which must wait for a decision."""
    session = await lock_session(db, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found", code="session_not_found")
    if session.status == SessionStatus.CANCELLED:
        raise Conflict("the session is cancelled", code="session_closed")
    proposal = await db.scalar(
        select(TaskProposal)
        .where(TaskProposal.id == proposal_id, TaskProposal.session_id == session_id)
        .with_for_update()
    )
    if proposal is None:
        raise NotFound(f"no proposal {proposal_id} in this session", code="proposal_not_found")
    if proposal.status != PROPOSED:
        raise Conflict(f"proposal {proposal_id} is {proposal.status}", code="proposal_decided")
    return session, proposal


async def accept(
    db: AsyncSession, *, session_id: uuid.UUID, proposal_id: int, keys: Keys, actor: str
) -> TaskProposal:
    """A person accepts a proposal: it becomes a task (queued at once when its dependencies
    are done; a session that had settled, finalized included, runs again). Commits."""
    from swarm_orchestrator.graph import scheduler  # it imports this module (via blackboard)

    session, proposal = await _lock_proposal(db, session_id=session_id, proposal_id=proposal_id)
    task_id = await _make_task(db, session=session, proposal=proposal, actor=actor)
    if task_id is not None:
        session_state.activate(db, session, actor=actor)
        await session_state.reopen(db, session, actor=actor)
        await task_state.block_downstream(db, session_id=session_id)
        await scheduler.queue_ready(db, session=session, keys=keys, only=[task_id])
        await session_state.finish_or_reopen(db, session)
    await db.commit()
    return proposal


async def refuse(
    db: AsyncSession, *, session_id: uuid.UUID, proposal_id: int, actor: str, reason: str
) -> TaskProposal:
    """A person refuses a proposal, saying why. Commits."""
    _, proposal = await _lock_proposal(db, session_id=session_id, proposal_id=proposal_id)
    _decide(proposal, REFUSED, by=actor, reason=reason or "refused")
    timeline.record(
        db,
        session_id=session_id,
        task_id=proposal.task_id,
        type="task.proposal_refused",
        actor=actor,
        data={"key": proposal.key, "proposal": proposal.id, "reason": proposal.reason},
    )
    await db.commit()
    return proposal
