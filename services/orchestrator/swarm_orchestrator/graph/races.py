"""Best of N: a task whose spec says `race: {n, agents}` does not run itself. When it is
ready, `start` makes it `racing` and creates `n` contenders: tasks of kind `race` (no part
of the graph's counts; their spend counts, and is summed into the raced task's), each a full
run of the task (its prompt, gates and review) in its own worktree on its own branch, on the
agent kinds of `agents` in turn, with the task's dependencies (so they get the same
handoffs) and its persona. The first contender whose attempt succeeds, passes its gates and
passes its review (`passed`) wins: its work becomes the raced task's (`task_state.race_won`:
the merge queue, or a person's approval), so does its handoff (`blackboard.adopt`: a
contender's facts and proposals count only if it wins), and the others are cancelled, their
branches kept for inspection. When every contender ended without winning, the raced task
fails (`settle`, from `session_state.finish_or_reopen`). Cancelling the raced task cancels
its contenders.

A contender is fenced by the race it belongs to (`race_of.attempt`, the raced task's
attempt): one of an older race (the task was retried meanwhile) wins nothing. Every state
change goes through `task_state`; a contender is locked after the task it races for
(`graph.locking`), so two contenders that pass at once take turns, and one wins.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.specs import RaceSpec, TaskSpec
from swarm_common.states import TaskStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db.models import Session, Task, TaskDependency
from swarm_orchestrator.graph import blackboard, task_state
from swarm_orchestrator.graph.locking import lock_tasks

__all__ = ["cancel_contenders", "passed", "settle", "start"]

log = logging.getLogger(__name__)

_OPEN = (TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.REVIEWING)
_LOST = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.BLOCKED)


async def start(db: AsyncSession, *, session: Session, task: Task, base: str) -> list[uuid.UUID]:
    """`task` is ready: it races. Create its contenders (pending, ready at once); return
    their ids for the caller to queue."""
    race = RaceSpec.model_validate(task.spec["race"])
    task_state.start_race(db, task, base=base, data={"n": race.n, "agents": race.agents})
    agents: list[str] = list(race.agents) or [task.agent]
    spec = {
        k: v
        for k, v in task.spec.items()
        if k in TaskSpec.model_fields and k not in ("race", "persona")
    }
    deps = (
        await db.execute(
            select(Task.key, Task.id)
            .join(TaskDependency, TaskDependency.depends_on_id == Task.id)
            .where(TaskDependency.task_id == task.id)
        )
    ).all()
    ids: dict[str, uuid.UUID] = {row.key: row.id for row in deps}
    new = []
    for n in range(1, race.n + 1):
        agent = agents[(n - 1) % len(agents)]
        checked = TaskSpec.model_validate(
            {
                **spec,
                "title": f"{task.title} (contender {n} of {race.n}, {agent})"[:500],
                "agent": agent,
                "depends_on": sorted(ids),
                "requires_approval": False,  # the raced task asks for approval, if anyone
            }
        )
        # '_' starts no submitted key: contenders never meet the graph's keys.
        key = f"_race-{task.key[:30]}-{task.id.hex[:8]}-{task.attempt}-{n}"
        contender = checked.model_copy(update={"key": key})
        new.append(
            task_state.NewTask(
                spec=contender,
                kind="race",
                races_task_id=task.id,
                spec_extra={
                    "race_of": {"task_id": str(task.id), "attempt": task.attempt, "n": n},
                    **(
                        {"assigned_persona": task.spec["assigned_persona"]}
                        if task.spec.get("assigned_persona")
                        else {}
                    ),
                },
                created={"key": contender.key, "races_for": task.key, "agent": agent, "n": n},
            )
        )
    await task_state.create_tasks(
        db,
        session=session,
        tasks=new,
        ids={**ids, **{t.spec.key: t.id for t in new}},
        actor="system",
    )
    await db.flush()
    log.info("race started", extra={"task_key": task.key, "n": race.n, "agents": agents})
    return [t.id for t in new]


async def passed(
    db: AsyncSession,
    *,
    session: Session,
    contender: Task,
    keys: Keys,
    actor: str,
    source: str | None,
    data: dict[str, Any],
) -> None:
    """`contender`'s work passed its gates and its review: it ends, and the first to get
    here while its race is on wins it for the task it races for."""
    task_state.answered(db, contender, actor=actor, source=source, data={**data, "contender": True})
    race_of = contender.spec.get("race_of") or {}
    task = await db.get(Task, contender.races_task_id)  # locked before it (`lock_task`)
    if task is None or task.status != TaskStatus.RACING or task.attempt != race_of.get("attempt"):
        return  # another contender won, or the race is over
    await task_state.race_won(
        db,
        task,
        winner=contender,
        actor=actor,
        data={"winner": contender.key, "agent": contender.agent, **data},
    )
    await blackboard.adopt(db, session=session, task=task, winner=contender, actor=actor)
    await cancel_contenders(db, session=session, task=task, keys=keys, actor="race")
    log.info("race won", extra={"task_key": task.key, "winner": contender.key})


async def cancel_contenders(
    db: AsyncSession, *, session: Session, task: Task, keys: Keys, actor: str
) -> int:
    """Cancel the contenders of `task` that have not ended (it was won, cancelled or
    retried); the caller holds `task`'s lock, so these are locked after it."""
    running = await lock_tasks(
        db, session, Task.races_task_id == task.id, Task.status.in_([s.value for s in _OPEN])
    )
    for contender in running:
        await task_state.cancel(db, contender, keys=keys, actor=actor)
    return len(running)


async def settle(db: AsyncSession, session: Session) -> None:
    """Fail every task of `session` still racing whose contenders of its current race all
    ended without a win; nobody would decide for it otherwise."""
    racing = (
        await db.scalars(
            select(Task.id).where(Task.session_id == session.id, Task.status == TaskStatus.RACING)
        )
    ).all()
    if not racing:
        return
    contenders = (
        await db.execute(
            select(
                Task.races_task_id, Task.key, Task.status, Task.reason, Task.spec["race_of"]
            ).where(Task.races_task_id.in_(list(racing)))
        )
    ).all()
    for task in await lock_tasks(db, session, ids=list(racing)):
        mine = [
            c for c in contenders if c[0] == task.id and (c[4] or {}).get("attempt") == task.attempt
        ]
        if task.status != TaskStatus.RACING or not mine:
            continue
        if any(c.status not in _LOST for c in mine):
            continue
        why = "; ".join(f"{c.key}: {c.reason or c.status}" for c in mine)
        task_state.fail(
            db,
            task,
            reason=f"every contender failed: {why}"[:2000],
            entry=task_state.Entry("task.race_lost", data={"contenders": [c.key for c in mine]}),
        )
    await task_state.block_downstream(db, session_id=session.id)
