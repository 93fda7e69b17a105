"""The owner of handoffs and of a session's blackboard: the only code that writes
`tasks.handoff` and `blackboard_facts`.

- A succeeded task's handoff (`swarm_common.handoffs.Handoff`, from its adapter) is kept on
  the task, said on the timeline (`task.handoff`), its facts go to the blackboard with the
  task as author, and its proposed follow-ups to `graph.delegation` (`take_handoff`, called
  from `graph.reports` in the transaction that applies the success).
- People write facts over the API (`write`). Every write is a new row: a key's latest row
  is its value (a null value clears it), the older ones its history. `blackboard.written`
  on the timeline says who wrote which keys.
- A task being queued gets its parents' handoffs and the blackboard as it stands then
  (`context_for`, called by `graph.scheduler` under the session's lock), bounded as
  `swarm_common.handoffs` says.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.handoffs import (
    MAX_BOARD_BYTES,
    MAX_BOARD_FACTS,
    MAX_PARENT_BYTES,
    BoardFact,
    Fact,
    Handoff,
    ParentHandoff,
    clip,
    value_size,
)
from swarm_common.messages import Message, TaskSucceeded, utcnow
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import BlackboardFact, Session, Task, TaskDependency
from swarm_orchestrator.graph import delegation

__all__ = [
    "board_snapshot",
    "adopt",
    "contexts_for",
    "current",
    "history",
    "parent_handoffs",
    "read_board",
    "take_handoff",
    "task_author",
    "write",
]

MAX_LISTED = 1000
"""Most facts one read of the blackboard lists."""


def task_author(task: Task) -> str:
    """How a task signs what it writes: `task:<key>`, and its persona when it has one."""
    persona = (task.spec.get("assigned_persona") or {}).get("name")
    return f"task:{task.key}" + (f" ({persona})" if persona else "")


async def write(
    db: AsyncSession,
    *,
    session_id: uuid.UUID,
    facts: Sequence[Fact],
    author: str,
    task: Task | None = None,
) -> list[BlackboardFact]:
    """Append `facts` to the session's blackboard (a key given twice: its last value), with
    one `blackboard.written` timeline entry; in the caller's transaction."""
    latest = {fact.key: fact for fact in facts}
    now = utcnow()
    rows = [
        BlackboardFact(
            session_id=session_id,
            key=fact.key,
            value=fact.value,
            author=author,
            task_id=task.id if task is not None else None,
            created_at=now,
        )
        for fact in latest.values()
    ]
    if not rows:
        return []
    db.add_all(rows)
    timeline.record(
        db,
        session_id=session_id,
        task_id=task.id if task is not None else None,
        attempt=task.attempt if task is not None else None,
        type="blackboard.written",
        actor=author,
        data={
            "keys": list(latest)[:50],
            "cleared": [k for k, f in latest.items() if f.value is None][:50],
        },
    )
    await db.flush()
    return rows


async def current(db: AsyncSession, *, session_id: uuid.UUID) -> list[BlackboardFact]:
    """Each key's latest value (cleared keys left out), the newest first."""
    rows = await db.scalars(
        select(BlackboardFact)
        .where(BlackboardFact.session_id == session_id)
        .ext(distinct_on(BlackboardFact.key))
        .order_by(BlackboardFact.key, BlackboardFact.id.desc())
        .execution_options(populate_existing=True)
    )
    facts = [row for row in rows if row.value is not None]
    facts.sort(key=lambda row: row.id, reverse=True)
    return facts


async def read_board(
    db: AsyncSession, *, session_id: uuid.UUID, limit: int = MAX_LISTED
) -> tuple[list[BlackboardFact], int]:
    """`current`, at most `limit` of it; and how many keys hold a value in all."""
    facts = await current(db, session_id=session_id)
    return facts[:limit], len(facts)


async def history(
    db: AsyncSession, *, session_id: uuid.UUID, key: str, limit: int = MAX_LISTED
) -> list[BlackboardFact]:
    """Every value `key` had, the newest first."""
    rows = await db.scalars(
        select(BlackboardFact)
        .where(BlackboardFact.session_id == session_id, BlackboardFact.key == key)
        .order_by(BlackboardFact.id.desc())
        .limit(limit)
    )
    return list(rows)


# -- a succeeded task's handoff ------------------------------------------------------------


async def take_handoff(
    db: AsyncSession,
    *,
    session: Session,
    task: Task,
    report: Message,
    actor: str,
) -> None:
    """Keep a succeeded task's handoff (from its adapter's `report`) on it, write its facts
    to the blackboard and pass its proposals on; an adapter that sent none (older) leaves an
    empty one. The caller holds the session's and the task's locks (`graph.reports`, which
    applies a report once). An attempt after a reviewer sent the work back hands off again
    (its facts are newer), but proposals are weighed once per task."""
    handoff = (report.handoff if isinstance(report, TaskSucceeded) else None) or Handoff()
    task.handoff = handoff.model_dump(mode="json")
    if handoff.source != "none" or handoff.problems:  # an empty one says nothing
        _record_handoff(db, session=session, task=task, handoff=handoff, actor=actor)
    if task.kind == "race":  # a contender's facts and proposals count only if it wins
        return
    await _pass_on(db, session=session, task=task, handoff=handoff, actor=actor)


async def adopt(
    db: AsyncSession, *, session: Session, task: Task, winner: Task, actor: str
) -> None:
    """A best-of-N task's winning contender hands off for it (`graph.races`): its handoff
    is the task's, for its dependents; its facts and proposals count now, as the task's."""
    handoff = Handoff.model_validate(winner.handoff or {})
    task.handoff = handoff.model_dump(mode="json")
    await _pass_on(db, session=session, task=task, handoff=handoff, actor=actor)


async def _pass_on(
    db: AsyncSession, *, session: Session, task: Task, handoff: Handoff, actor: str
) -> None:
    if handoff.facts:
        await write(
            db, session_id=session.id, facts=handoff.facts, author=task_author(task), task=task
        )
    if handoff.proposals and not await delegation.proposed_before(db, task=task):
        await delegation.consider(
            db, session=session, task=task, proposals=handoff.proposals, actor=actor
        )


def _record_handoff(
    db: AsyncSession, *, session: Session, task: Task, handoff: Handoff, actor: str
) -> None:
    timeline.record(
        db,
        session_id=session.id,
        task_id=task.id,
        attempt=task.attempt,
        type="task.handoff",
        actor=actor,
        data={
            "summary": clip(handoff.summary, 500),
            "notes": len(handoff.notes),
            "facts": [f.key for f in handoff.facts],
            "proposals": len(handoff.proposals),
            "source": handoff.source,
            **({"problems": handoff.problems} if handoff.problems else {}),
        },
    )


# -- what a task being queued gets ---------------------------------------------------------


async def contexts_for(
    db: AsyncSession, *, session_id: uuid.UUID, tasks: Sequence[Task]
) -> dict[uuid.UUID, dict[str, Any]]:
    """For each task being queued, its message's `handoffs` (its parents', in key order,
    bounded), and for all of them the `blackboard` as it stands now (`board_snapshot`)."""
    board = await board_snapshot(db, session_id=session_id)
    parents = await parent_handoffs(db, task_ids=[t.id for t in tasks])
    return {t.id: {"handoffs": parents.get(t.id, []), **board} for t in tasks}


async def parent_handoffs(
    db: AsyncSession, *, task_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ParentHandoff]]:
    """Each task's parents' handoffs, in key order; past `MAX_PARENT_BYTES` for one task a
    parent is named without its summary and notes. One query for all of them."""
    if not task_ids:
        return {}
    rows = await db.execute(
        select(
            TaskDependency.task_id,
            Task.key,
            Task.title,
            Task.spec["assigned_persona"]["name"],
            Task.handoff,
        )
        .join(TaskDependency, TaskDependency.depends_on_id == Task.id)
        .where(TaskDependency.task_id.in_(task_ids), Task.handoff.is_not(None))
        .order_by(TaskDependency.task_id, Task.key)
    )
    found: dict[uuid.UUID, list[ParentHandoff]] = {}
    budgets: dict[uuid.UUID, int] = {}
    for child, key, title, persona, handoff in rows.all():
        parent = ParentHandoff(
            key=key,
            title=title,
            persona=persona if isinstance(persona, str) else None,
            summary=handoff.get("summary") or "",
            notes=list(handoff.get("notes") or []),
        )
        size = value_size(parent.model_dump(mode="json"))
        budget = budgets.get(child, MAX_PARENT_BYTES)
        if size > budget:
            parent = ParentHandoff(key=key, title=title, persona=parent.persona)
        budgets[child] = budget - min(size, budget)
        found.setdefault(child, []).append(parent)
    return found


async def board_snapshot(db: AsyncSession, *, session_id: uuid.UUID) -> dict[str, Any]:
    """The blackboard for task messages: the newest facts up to `MAX_BOARD_FACTS` and
    `MAX_BOARD_BYTES` (`blackboard`), and how many were left out (`blackboard_omitted`)."""
    facts = await current(db, session_id=session_id)
    board: list[BoardFact] = []
    budget = MAX_BOARD_BYTES
    for row in facts:
        fact = BoardFact(key=row.key, value=row.value, author=row.author, at=_at(row.created_at))
        size = value_size(fact.model_dump(mode="json"))
        if len(board) == MAX_BOARD_FACTS or size > budget:
            break
        budget -= size
        board.append(fact)
    return {"blackboard": board, "blackboard_omitted": len(facts) - len(board)}


def _at(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""
