"""The merge queue: succeeded tasks join the integration branch one at a time, in the order
they finished, before their dependents are queued.

A merge is a `--no-ff` merge commit made without a worktree, recorded while the session's
row lock is held, so merges, rollbacks and queueing of one session never interleave,
whichever orchestrator replica runs them. One transaction merges a run of work (`RUN` at
most): the first task in the queue, then the plain tasks right after it (a commit of their
own, no policy to judge them), each merge commit (`git.merge_commit`: `merge-tree`, then
`commit-tree`) made onto the one before, the first onto the head the session records; then
one compare-and-swap moves the branch from that head to the last (`git.move_branch`), and
their dependents are queued and the session settled once. Most of a merge's time is git's,
so the merge commits of a plain session's queue are made before the lock is taken
(`_chain_ahead`, beside whatever holds it) and used under it when they are still the same
merges (the task, its attempt, its commit and what it merges onto). When the run cannot
start so (a conflict, a swap that fails), its first task is merged the careful way
(`git.merge_into`), from git's own head. Git is the truth for the branch: a crash after the
branch moved but before the transaction committed leaves the session's record behind git,
so the swap fails, and the careful way finds the task's commit already in the branch and
records it then, with the tasks after it whose work the branch holds too. Work with
nothing to merge (a `noop` task, an attempt that changed nothing) is recorded in runs too,
with the same one queueing and settling.

A conflict leaves the branch untouched and, per the session's `conflicts` policy, either
puts the session in `awaiting_review` or adds a resolution task: an agent gets a worktree of
the task's work with the integration head merged in, conflict markers and all, and its
result is merged in the task's place.

Before a task's work merges it is checked against the session's policy
(`integration.policies`): work that crosses it waits in `awaiting_approval` with the reason
(`task_state.hold_for_approval`) until a person approves it (then it merges unchecked) or
cancels it. The check is here, not where the attempt's success is applied, because it reads
git: that diff is read before the session's lock is taken (`_look_ahead`) and used under it
only if the task, its commit and the head are still the same (else read again). A dry run
(`integration.dry_run`) merges into its dry-run branch instead and records what the task
would have merged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git, logs
from swarm_common.messages import utcnow
from swarm_common.session_settings import SessionSettings
from swarm_common.specs import TaskSpec, check_task_key
from swarm_common.states import MergeStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db.models import Session, Task, TaskDependency
from swarm_orchestrator.graph import scheduler, session_state, task_state
from swarm_orchestrator.graph.locking import lock_session, lock_tasks
from swarm_orchestrator.graph.personas import Assignment
from swarm_orchestrator.integration import dry_run, policies
from swarm_orchestrator.observability import metrics

__all__ = ["merge_next", "merge_pending", "session_settings", "settle_unchanged"]

log = logging.getLogger(__name__)

RESOLVE_PROMPT = """\
The work of task `{key}` ({title}) conflicts with the session's integration branch, which \
other tasks have changed since this work began. Git has merged the integration branch into \
this worktree and left conflict markers (<<<<<<<, =======, >>>>>>>) in these files:

{files}

Resolve every conflict so that the intent of both sides is kept, remove every conflict \
marker, and make sure the project still works. The original task was:

{prompt}"""


_WAITING = (Task.merge_status == MergeStatus.PENDING, Task.status == TaskStatus.SUCCEEDED)
"""A task in the merge queue: its work succeeded and waits to merge."""
_ORDER = (Task.merge_seq, Task.id)
"""The merge queue's order: as the work finished."""


def _queue(session_id: uuid.UUID, limit: int) -> Select[Task]:
    """The first `limit` tasks of the session's merge queue, read without a lock."""
    return (
        select(Task).where(Task.session_id == session_id, *_WAITING).order_by(*_ORDER).limit(limit)
    )


def session_settings(session: Session) -> SessionSettings:
    """The session's settings; sessions made before a setting existed get its default."""
    try:
        return SessionSettings.model_validate(session.settings or {})
    except ValidationError:
        log.warning("session settings unreadable; defaults used", extra={"id": str(session.id)})
        return SessionSettings()


async def merge_pending(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    workspace: Path,
    keys: Keys,
    limit: int = 200,
) -> int:
    """Merge what waits in every session's queue (at most `limit` tasks, give or take one
    run of `RUN`); return how many tasks left the queue."""
    async with sessionmaker() as db:
        rows = (
            await db.execute(
                select(Session.id, Session.settings).where(
                    exists().where(
                        Task.session_id == Session.id, Task.merge_status == MergeStatus.PENDING
                    )
                )
            )
        ).all()
    done = 0
    for session_id, raw in rows:
        # Only an optimisation: a setting changed since is read again under the lock.
        look_ahead = _reads_ahead(raw)
        with logs.bound(session_id=str(session_id)):
            while done < limit:
                left = await merge_next(
                    sessionmaker,
                    session_id,
                    workspace=workspace,
                    keys=keys,
                    look_ahead=look_ahead,
                )
                if not left:
                    break
                done += left
    return done


def _reads_ahead(raw: dict[str, Any] | None) -> bool:
    """Whether a session with these settings reads git before its lock (`_look_ahead`)."""
    try:
        settings = SessionSettings.model_validate(raw or {})
    except ValidationError:
        return True
    return settings.dry_run or policies.has_limits(settings.policy)


async def merge_next(
    sessionmaker: async_sessionmaker[AsyncSession],
    session_id: uuid.UUID,
    *,
    workspace: Path,
    keys: Keys,
    look_ahead: bool = True,
) -> int:
    """Merge the first task of one session's queue, and the plain ones right after it in
    the same transaction (`_merge_run`); return how many left the queue (0: it is empty)."""
    ahead = await _look_ahead(sessionmaker, session_id, workspace=workspace) if look_ahead else None
    made = [] if look_ahead else await _chain_ahead(sessionmaker, session_id, workspace=workspace)
    if made is None:
        return 0  # nothing to merge as of now; what is approved or done later wakes us
    async with sessionmaker() as db, db.begin():
        session = await lock_session(db, session_id)
        if session is None:
            return 0
        queue = await lock_tasks(
            db,
            session,
            *_WAITING,
            order_by=_ORDER,
            limit=RUN,
        )
        if not queue:
            return 0
        task = queue[0]
        start = scheduler.work_head(session)  # a dry run's: its dry-run branch
        mirror = workspace / session.repo_path
        empty = 0  # a run of work with nothing to merge, recorded together
        while empty < len(queue) and await _nothing_to_merge(queue[empty], mirror, start):
            empty += 1
        if empty:
            brought_in: list[uuid.UUID] = []
            for done in queue[:empty]:
                brought_in += await _record_merged(db, session=session, task=done, head=None)
            await _after_merges(db, session=session, keys=keys, brought_in=brought_in)
            return empty
        commit = str((task.result or {})["commit"])  # it has one, or it had nothing to merge
        settings = session_settings(session)
        look = _Look(task_id=task.id, commit=commit, start=start)
        found = ahead if ahead is not None and ahead.look == look else None
        if found is None and _wants_change(settings, task, commit):
            found = await asyncio.to_thread(_inspect, mirror, look, task.base_commit)
        violations = _violations(settings, task, found)
        if settings.dry_run:
            await _rehearse(
                db,
                session=session,
                task=task,
                keys=keys,
                mirror=mirror,
                found=found,
                look=look,
                violations=violations,
            )
        elif violations:
            _hold(db, task=task, found=found, violations=violations)
        else:
            return await _merge_run(
                db, session=session, queue=queue, keys=keys, mirror=mirror, look=look, made=made
            )
    return 1


def _merges_nothing(task: Task, start: str) -> bool | None:
    """Whether the task's work brings nothing to merge onto `start`, as far as is known
    without git: True with no commit (a `noop` task) or an unchanged one that `start` is;
    False with a commit of its own; None for an unchanged one that `start` may hold."""
    commit: str | None = (task.result or {}).get("commit")
    if not commit or commit == start == task.base_commit:
        return True
    return False if commit != task.base_commit else None


async def _nothing_to_merge(task: Task, mirror: Path, start: str) -> bool:
    """Whether the task's work brings nothing to merge: no commit (a `noop` task), or the
    attempt changed nothing and the commit it started from is on the branch already."""
    known = _merges_nothing(task, start)
    if known is not None:
        return known
    unchanged = str(task.base_commit)  # None came back: the commit is the one it started from
    return await asyncio.to_thread(git.is_ancestor, mirror, unchanged, start)


async def settle_unchanged(db: AsyncSession, *, session: Session, task: Task) -> bool:
    """Record work that changed nothing merged (`empty`) at once, in the caller's
    transaction (the session locked), rather than at its turn in the queue: its attempt
    made no commit, or its commit is the one it started from and the head the session's
    work goes onto, so there is nothing to merge and no git to ask, now or after the merges
    before it (`_merges_nothing`, which the queue asks first too). A resolution task waits
    its turn: its merge marks what it resolved. True when recorded; the caller queues its
    dependents."""
    if (
        task.status != TaskStatus.SUCCEEDED
        or task.merge_status != MergeStatus.PENDING
        or task.resolves_task_id is not None
        or not _merges_nothing(task, scheduler.work_head(session))
    ):
        return False
    await _record_merged(db, session=session, task=task, head=None)
    return True


RUN = 20
"""Tasks one transaction may merge one after another (`_merge_run`); the session's lock is
held for as long."""


@dataclass(frozen=True)
class _Link:
    """A merge commit made and not yet on the branch: the task's `commit` (of `attempt`)
    merged onto `onto`."""

    task_id: uuid.UUID
    attempt: int
    commit: str
    onto: str
    merge: str


@dataclass(frozen=True)
class _Merging:
    """What making a task's merge commit needs (read under the lock or before it)."""

    task_id: uuid.UUID
    attempt: int
    commit: str
    message: str
    author: git.Author

    @classmethod
    def of(cls, session: Session, task: Task, commit: str) -> _Merging:
        return cls(task.id, task.attempt, commit, _message(session, task), _author(task))


def _chain(mirror: Path, onto: str, queue: list[_Merging], made: list[_Link]) -> list[_Link]:
    """Merge commits for `queue`, each onto the one before, the first onto `onto`, until
    one conflicts or fails; the ones in `made` (made before the lock) are used again when
    they are the same merge. Blocking: in a thread."""
    ready = {(m.task_id, m.attempt, m.commit, m.onto): m.merge for m in made}
    links: list[_Link] = []
    for item in queue:
        merge = ready.get((item.task_id, item.attempt, item.commit, onto)) or git.merge_commit(
            mirror, onto, item.commit, message=item.message, author=item.author
        )
        if merge is None:
            break
        links.append(_Link(item.task_id, item.attempt, item.commit, onto, merge))
        onto = merge
    return links


def _plain(settings: SessionSettings, task: Task) -> str | None:
    """The commit of work that merges with no question asked (a commit of its own, no
    policy to judge it), else None."""
    commit: str | None = (task.result or {}).get("commit")
    if not commit or commit == task.base_commit or _wants_change(settings, task, commit):
        return None
    return commit


async def _chain_ahead(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID, *, workspace: Path
) -> list[_Link] | None:
    """The merge commits of the plain work first in the session's queue, made before the
    lock is taken (git's part of a merge, most of its time, then runs beside whatever holds
    the lock, such as approvals filling the queue); the queue is read again while it grows,
    `RUN` at most. `_merge_run` uses those that still fit under the lock. None when the
    queue is empty: no lock is taken then (it would wait behind the approvals that fill the
    queue, to find it empty)."""
    made: list[_Link] = []
    while True:
        ahead = await _queue_ahead(sessionmaker, session_id)
        if ahead is None:
            return made or None
        head, repo_path, queue = ahead
        if head is None or len(queue) <= len(made):
            return made
        made = await asyncio.to_thread(_chain, workspace / repo_path, head, queue, made)
        if len(made) < len(queue) or len(made) >= RUN:
            return made  # a conflict or a failure first (the lock's to find), or enough


async def _queue_ahead(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID
) -> tuple[str | None, str, list[_Merging]] | None:
    """The session's integration head, repository and the plain work first in its queue,
    read without a lock; None when nothing waits to merge."""
    async with sessionmaker() as db:
        session = await db.get(Session, session_id)
        if session is None:
            return None
        tasks = (await db.scalars(_queue(session_id, RUN))).all()
    if not tasks:
        return None
    settings = session_settings(session)
    queue: list[_Merging] = []
    for task in tasks if not settings.dry_run else []:
        commit = _plain(settings, task)
        if commit is None:
            break
        queue.append(_Merging.of(session, task, commit))
    return session.integration_head, session.repo_path, queue


async def _merge_run(
    db: AsyncSession,
    *,
    session: Session,
    queue: list[Task],
    keys: Keys,
    mirror: Path,
    look: _Look,
    made: list[_Link],
) -> int:
    """Merge the first task of `queue` and the plain work right after it (a commit of its
    own, no policy to judge it), each onto the merge before, with one compare-and-swap of
    the branch from the head the session records (`_onto`), then queue their dependents and
    settle the session once. When the first does not merge so (a conflict, a branch that
    moved), it is merged the careful way (`_merge_careful`) and the run goes on from the
    head that made. Return how many left the queue."""
    brought_in: list[uuid.UUID] = []
    done = 0
    if session.integration_head == look.start:
        brought_in, done = await _onto(db, session, queue, mirror, made, first=look.commit)
    if not done:
        careful = await _merge_careful(
            db, session=session, queue=queue, keys=keys, mirror=mirror, look=look
        )
        if careful is None:
            return 1  # a conflict or a failure, recorded and settled
        brought_in, done = careful
        more, count = await _onto(db, session, queue[done:], mirror, made)
        brought_in, done = brought_in + more, done + count
    await _after_merges(db, session=session, keys=keys, brought_in=brought_in)
    return done


async def _onto(
    db: AsyncSession,
    session: Session,
    tasks: list[Task],
    mirror: Path,
    made: list[_Link],
    *,
    first: str | None = None,
) -> tuple[list[uuid.UUID], int]:
    """Merge the plain work first in `tasks` (the first's commit given as `first` when
    the caller knows it may merge), each onto the one before, the first onto the head the
    session records, and move the branch there in one compare-and-swap; record them merged.
    Return the tasks brought in and how many of `tasks` merged (0: none, the branch as it
    was, when the first does not merge cleanly or the branch moved)."""
    head = session.integration_head
    if head is None or not tasks:
        return [], 0
    settings = session_settings(session)
    merging: list[_Merging] = []
    for task in tasks:
        commit = first if first is not None and not merging else _plain(settings, task)
        if commit is None:
            break
        merging.append(_Merging.of(session, task, commit))
    links = await asyncio.to_thread(_chain, mirror, head, merging, made) if merging else []
    if not links or not await asyncio.to_thread(
        git.move_branch,
        mirror,
        scheduler.integration_branch(session.id),
        links[-1].merge,
        old=head,
        reason=f"swarm: merge {len(links)} task(s)",
    ):
        return [], 0
    brought_in: list[uuid.UUID] = []
    for task, link in zip(tasks, links, strict=False):
        merged = git.MergeResult(head=link.merge, merged=True)
        brought_in += await _record_merged(db, session=session, task=task, head=merged)
    return brought_in, len(links)


async def _merge_careful(
    db: AsyncSession, *, session: Session, queue: list[Task], keys: Keys, mirror: Path, look: _Look
) -> tuple[list[uuid.UUID], int] | None:
    """Merge the first task of `queue` the careful way (the session is locked;
    `git.merge_into`: git's own head read, a commit it already holds found) and record it
    merged. When the branch held its work already (a crash lost the record of a run), the
    tasks after it whose work it holds too are recorded with it. Return the tasks brought in
    and how many of `queue` merged; None on a conflict or a failure, recorded and settled."""
    task = queue[0]
    branch = scheduler.integration_branch(session.id)
    message, author = _message(session, task), _author(task)
    try:
        result = await asyncio.to_thread(
            _merge, mirror, branch, look.start, look.commit, message, author
        )
    except git.GitError as exc:
        if exc.transient:
            raise
        log.error(
            "merge failed", extra={"task_id": str(task.id), "task_key": task.key, "error": str(exc)}
        )
        await _conflict(
            db, session=session, task=task, files=[], keys=keys, error=exc.stderr[:2000]
        )
        return None
    if result.conflicts:
        await _conflict(db, session=session, task=task, files=list(result.conflicts), keys=keys)
        return None
    brought_in = await _record_merged(db, session=session, task=task, head=result)
    done = 1
    for later in queue[1:] if result.already else []:
        commit = (later.result or {}).get("commit")
        if not commit or not await asyncio.to_thread(git.is_ancestor, mirror, commit, result.head):
            break
        brought_in += await _record_merged(db, session=session, task=later, head=result)
        done += 1
    return brought_in, done


# -- policies and dry runs -----------------------------------------------------------------


@dataclass(frozen=True)
class _Look:
    """Which work a reading of git is about: the task, its commit, the head it merges into."""

    task_id: uuid.UUID
    commit: str
    start: str


@dataclass(frozen=True)
class _Found:
    """What the task's work changes (`change`), or why git could not say (`error`)."""

    look: _Look
    change: policies.Change | None
    error: str = ""


def _wants_change(settings: SessionSettings, task: Task, commit: str) -> bool:
    """Whether merging needs to know what the work changes: a dry run reports it, and a
    policy judges it unless a person approved this commit."""
    if settings.dry_run:
        return True
    return policies.has_limits(settings.policy) and task.approved_commit != commit


def _inspect(mirror: Path, look: _Look, base: str | None) -> _Found:
    """Read what the work changes (blocking: in a thread). Only a git error that may pass
    (a held lock) is raised; any other is the answer."""
    try:
        change = policies.read_change(
            mirror, start=look.start, commit=look.commit, fallback_base=base
        )
    except git.GitError as exc:
        if exc.transient:
            raise
        return _Found(look=look, change=None, error=exc.stderr[:2000] or str(exc))
    return _Found(look=look, change=change)


async def _look_ahead(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID, *, workspace: Path
) -> _Found | None:
    """Read what the first work in the session's queue changes, before any lock is taken
    (a large diff takes a while); None when nothing needs reading."""
    async with sessionmaker() as db:
        session = await db.get(Session, session_id)
        if session is None:
            return None
        settings = session_settings(session)
        if not settings.dry_run and not policies.has_limits(settings.policy):
            return None  # most sessions: nothing to read
        task = await db.scalar(_queue(session_id, 1))
    commit = (task.result or {}).get("commit") if task is not None else None
    if task is None or not commit or not _wants_change(settings, task, commit):
        return None
    look = _Look(task_id=task.id, commit=commit, start=scheduler.work_head(session))
    try:
        return await asyncio.to_thread(
            _inspect, workspace / session.repo_path, look, task.base_commit
        )
    except git.GitError:
        return None  # read again under the lock


def _violations(
    settings: SessionSettings, task: Task, found: _Found | None
) -> list[policies.Violation]:
    """The policy limits the work crosses; a change git could not read crosses any that is
    set (a person looks instead)."""
    if found is None or not policies.has_limits(settings.policy):
        return []
    if task.approved_commit == found.look.commit:
        return []
    if found.change is None:
        return [
            policies.Violation(
                kind="unreadable",
                reason=f"what it changes could not be read from git: {found.error[:300]}",
                found=0,
            )
        ]
    return policies.check(settings.policy, found.change)


def _hold(
    db: AsyncSession, *, task: Task, found: _Found | None, violations: list[policies.Violation]
) -> None:
    """The work crosses the session's policy: it waits for a person's approval."""
    reason = policies.reason(violations)
    change = found.change if found is not None else None
    task_state.hold_for_approval(
        db,
        task,
        reason=reason,
        violations=[v.as_dict() for v in violations],
        data={
            "commit": (task.result or {}).get("commit"),
            "base": change.base if change is not None else task.base_commit,
            **({"diffstat": change.diffstat()} if change is not None else {}),
        },
    )
    log.warning(
        "task waits for approval: it crosses the session's policy",
        extra={
            "task_id": str(task.id),
            "task_key": task.key,
            "violations": [v.kind for v in violations],
        },
    )


async def _rehearse(
    db: AsyncSession,
    *,
    session: Session,
    task: Task,
    keys: Keys,
    mirror: Path,
    found: _Found | None,
    look: _Look,
    violations: list[policies.Violation],
) -> None:
    """A dry run: merge into the dry-run branch, record what would have merged (and the
    policies the work crosses: a dry run waits for no approval), and let the task's
    dependents run from there."""
    rehearsal = await asyncio.to_thread(
        dry_run.rehearse,
        mirror,
        session_id=session.id,
        start=look.start,
        commit=look.commit,
        message=_message(session, task),
        author=_author(task),
    )
    report = dry_run.would_merge(
        commit=look.commit,
        change=found.change if found is not None else None,
        rehearsal=rehearsal,
        violations=violations,
        read_error=found.error if found is not None else "",
    )
    if rehearsal.head is not None:
        session.dry_run_head = rehearsal.head
        session.updated_at = utcnow()
    task_state.dry_run_merged(db, task, would_merge=report)
    await db.flush()
    children = (
        await db.scalars(
            select(TaskDependency.task_id).where(TaskDependency.depends_on_id == task.id)
        )
    ).all()
    await scheduler.queue_ready(db, session=session, keys=keys, only=children)
    await session_state.finish_or_reopen(db, session)
    log.info(
        "dry run: task would merge",
        extra={
            "task_id": str(task.id),
            "task_key": task.key,
            "clean": report["clean"],
            "head": session.dry_run_head,
        },
    )


def _merge(
    mirror: Path, branch: str, start: str, commit: str, message: str, author: git.Author
) -> git.MergeResult:
    """Merge under the repository lock; the integration branch is made at `start` if a
    session from before merges existed lacks it."""
    if git.branch_head(mirror, branch) is None:
        with git.repo_lock(mirror):
            if git.branch_head(mirror, branch) is None:
                git.update_ref(
                    mirror, f"refs/heads/{branch}", start, old=git.ZERO, reason="swarm: integration"
                )
    return git.merge_into(mirror, branch, commit, message=message, author=author)


def _author(task: Task) -> git.Author:
    return git.Author(name=f"{task.role or task.agent} (swarm)", email="swarm@localhost")


def _message(session: Session, task: Task) -> str:
    return "\n".join(
        [
            f"Merge task {task.key}: {task.title}"[:200],
            "",
            f"Swarm-Task: {task.key}",
            f"Swarm-Session: {session.id}",
            f"Swarm-Attempt: {task.attempt}",
            f"Swarm-Agent: {task.agent}",
        ]
    )


async def _record_merged(
    db: AsyncSession, *, session: Session, task: Task, head: git.MergeResult | None
) -> list[uuid.UUID]:
    """Record the task merged (`head` None: it had nothing to merge), and the tasks it
    resolved; return their ids, the task's first."""
    status = MergeStatus.MERGED if head is not None else MergeStatus.EMPTY
    merge_commit = head.head if head is not None else None
    if head is not None:
        session.integration_head = head.head
        session.updated_at = utcnow()
    metrics.merged(db, result=status)
    task_state.merged(
        db,
        task,
        status=status,
        merge_commit=merge_commit,
        data={
            "commit": (task.result or {}).get("commit"),
            "merge_commit": merge_commit,
            "integration_head": session.integration_head,
        },
    )
    log.info(
        "task merged",
        extra={
            "task_id": str(task.id),
            "task_key": task.key,
            "merge_status": status,
            "head": session.integration_head,
        },
    )
    return [task.id, *await _resolved_by(db, session, task)]


async def _after_merges(
    db: AsyncSession, *, session: Session, keys: Keys, brought_in: list[uuid.UUID]
) -> None:
    """The work of `brought_in` is on the branch: their dependents may run, and the
    session may resume from review or finish."""
    await db.flush()
    children = (
        await db.scalars(
            select(TaskDependency.task_id).where(TaskDependency.depends_on_id.in_(brought_in))
        )
    ).all()
    await scheduler.resume_after_review(db, session=session, keys=keys, actor="system")
    await scheduler.queue_ready(db, session=session, keys=keys, only=children)
    await session_state.finish_or_reopen(db, session)


async def _resolved_by(db: AsyncSession, session: Session, task: Task) -> list[uuid.UUID]:
    """Mark `resolved` the conflicted tasks whose work `task` (a resolution task) brought
    in, along the chain of resolutions; return their ids."""
    resolved: list[uuid.UUID] = []
    resolved_id = task.resolves_task_id
    while resolved_id is not None:
        found = await lock_tasks(db, session, ids=[resolved_id])
        if not found or found[0].merge_status != MergeStatus.CONFLICT:
            break
        task_state.resolved(db, found[0], by=task.key, merge_commit=task.merge_commit)
        resolved.append(found[0].id)
        resolved_id = found[0].resolves_task_id
    return resolved


async def _conflict(
    db: AsyncSession,
    *,
    session: Session,
    task: Task,
    files: list[str],
    keys: Keys,
    error: str = "",
) -> None:
    data: dict[str, Any] = {
        "files": files[:500],
        "commit": (task.result or {}).get("commit"),
        "integration_head": session.integration_head,
    }
    if error:
        data["error"] = error
    metrics.merged(db, result="conflict" if files else "failed")
    task_state.conflicted(
        db,
        task,
        files=files,
        reason=(
            f"merge conflict with the integration branch in {len(files)} file(s)"
            if files
            else f"merge failed: {error[:500]}"
        ),
        data=data,
    )
    log.warning(
        "merge conflict", extra={"task_id": str(task.id), "task_key": task.key, "files": files[:20]}
    )
    policy = session_settings(session).conflicts
    rounds = await _resolution_depth(db, task)
    if policy.policy == "resolve" and files and rounds < policy.max_rounds:
        await _add_resolution_task(db, session=session, task=task, files=files, keys=keys)
    else:
        session_state.await_review(
            db,
            session,
            data={"task": task.key, "files": files[:500]},
            reason=f"the merge of task {task.key} conflicted"
            + (f" in {len(files)} file(s)" if files else ""),
        )
    await db.flush()
    await session_state.finish_or_reopen(db, session)


async def _resolution_depth(db: AsyncSession, task: Task) -> int:
    depth, current = 0, task.resolves_task_id
    while current is not None and depth < 100:
        depth += 1
        current = await db.scalar(select(Task.resolves_task_id).where(Task.id == current))
    return depth


async def _add_resolution_task(
    db: AsyncSession, *, session: Session, task: Task, files: list[str], keys: Keys
) -> None:
    policy = session_settings(session).conflicts
    key = await _free_key(db, session.id, f"{task.key[:44]}-resolve")
    prompt = policy.prompt or RESOLVE_PROMPT.format(
        key=task.key,
        title=task.title,
        files="\n".join(f"- {name}" for name in files[:200]),
        prompt=task.prompt,
    )
    original = task.spec
    spec = TaskSpec(
        key=key,
        title=f"Resolve the merge conflict of {task.key}",
        prompt=prompt,
        agent=policy.agent or task.agent,
        role=task.role,
        timeout_s=task.timeout_s,
        max_attempts=task.max_attempts,
        gates=original.get("gates"),
        files=files[:200],
        model=original.get("model") if not policy.agent else None,
        max_turns=original.get("max_turns"),
    )
    resolver = task_state.NewTask(
        spec=spec,
        priority=task.priority + 1,
        resolves_task_id=task.id,
        conflict_files=files,
        created={"key": key, "resolves": task.key, "files": files[:500]},
        persona=(  # the persona of the work it resolves: the same author, the same style
            Assignment(snapshot=original["assigned_persona"], why=f"resolves {task.key}")
            if original.get("assigned_persona")
            else None
        ),
    )
    await task_state.create_tasks(db, session=session, tasks=[resolver], ids={})
    await scheduler.queue_ready(db, session=session, keys=keys, only=[resolver.id])
    log.info("resolution task added", extra={"task_key": key, "resolves": task.key})


async def _free_key(db: AsyncSession, session_id: uuid.UUID, stem: str) -> str:
    for n in range(1, 1000):
        key = check_task_key(f"{stem}{n}")
        taken = await db.scalar(
            select(exists().where(Task.session_id == session_id, Task.key == key))
        )
        if not taken:
            return key
    raise RuntimeError(f"no free key for {stem}")
