"""Small helpers shared by the orchestrator tests: row counts, graph submission, and events
as an adapter would send them (proven with their attempt's key)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git
from swarm_common.messages import Message, TaskMessage, TaskStarted, TaskSucceeded
from swarm_common.streams import ENVELOPE_FIELD, Envelope, Keys, decode, encode, prove
from swarm_orchestrator.db.models import Attempt, Outbox, Session, Task, TaskDependency
from swarm_orchestrator.db.models import Base as Model
from swarm_orchestrator.graph import fleet
from swarm_orchestrator.graph.reports import Outcome, apply_event

__all__ = [
    "apply",
    "assert_counted",
    "tenant_client",
    "event_key",
    "live_worker",
    "mirror_commit",
    "count_rows",
    "envelope",
    "proven",
    "succeed_attempt",
    "new_session",
    "outcome_event",
    "task",
    "task_ids",
    "task_messages",
    "task_states",
]


def task(key: str, *deps: str, prompt: str = "true", **extra: Any) -> dict[str, Any]:
    return {"key": key, "prompt": prompt, "depends_on": list(deps), **extra}


async def new_session(
    api: httpx.AsyncClient, repo: Path, tasks: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"title": "test", "repo": str(repo), "base_ref": "main", **extra}
    if tasks is not None:
        body["tasks"] = tasks
    response = await api.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def count_rows(
    sessionmaker: async_sessionmaker[AsyncSession], model: type[Model], *where: Any
) -> int:
    async with sessionmaker() as db:
        return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def envelope(
    message: Message, envelope_id: str | None = None, *, key: str | None = None
) -> Envelope:
    """A message as the consumer would see it after a trip through Redis; with `key`, proven
    as an adapter proves its attempt's events."""
    fields = encode(message, envelope_id=envelope_id)
    return decode(prove(fields, key) if key else fields)


async def event_key(
    sessionmaker: async_sessionmaker[AsyncSession], task_id: uuid.UUID, attempt: int
) -> str | None:
    """The secret key of one attempt, as its task message carried it."""
    async with sessionmaker() as db:
        key: str | None = await db.scalar(
            select(Attempt.event_key).where(Attempt.task_id == task_id, Attempt.number == attempt)
        )
        return key


async def proven(
    sessionmaker: async_sessionmaker[AsyncSession],
    message: Message,
    envelope_id: str | None = None,
) -> dict[str, bytes]:
    """Stream fields of an event about an attempt, proven with that attempt's key (no proof
    when the attempt does not exist)."""
    fields = encode(message, envelope_id=envelope_id)
    task_id, attempt = getattr(message, "task_id", None), getattr(message, "attempt", None)
    key = await event_key(sessionmaker, task_id, attempt) if task_id and attempt else None
    return prove(fields, key) if key else fields


async def apply(
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    message: Message,
    envelope_id: str | None = None,
) -> Outcome:
    """Apply an event as the consumer would, proven as its attempt's adapter would send it."""
    fields = await proven(sessionmaker, message, envelope_id)
    async with sessionmaker() as db, db.begin():
        return await apply_event(db, decode(fields), keys=keys)


async def task_messages(
    sessionmaker: async_sessionmaker[AsyncSession], task_id: uuid.UUID
) -> list[TaskMessage]:
    """The task messages written to the outbox for one task, in order."""
    async with sessionmaker() as db:
        rows = (
            await db.scalars(select(Outbox).where(Outbox.kind == "xadd").order_by(Outbox.id))
        ).all()
    found = []
    for row in rows:
        message = decode({ENVELOPE_FIELD: row.payload[ENVELOPE_FIELD]}).message
        if isinstance(message, TaskMessage) and message.task_id == task_id:
            found.append(message)
    return found


async def task_ids(api: httpx.AsyncClient, session_id: str) -> dict[str, uuid.UUID]:
    tasks = (await api.get(f"/v1/sessions/{session_id}/tasks")).json()
    return {t["key"]: uuid.UUID(t["id"]) for t in tasks}


async def task_states(api: httpx.AsyncClient, session_id: str) -> dict[str, tuple[str, int]]:
    tasks = (await api.get(f"/v1/sessions/{session_id}/tasks")).json()
    return {t["key"]: (t["status"], t["attempt"]) for t in tasks}


def outcome_event(
    cls: type[Message], session_id: str, task_id: uuid.UUID, attempt: int = 1, **fields: Any
) -> Message:
    return cls(
        session_id=uuid.UUID(session_id),
        task_id=task_id,
        attempt=attempt,
        worker="w-test",
        **fields,
    )


async def succeed_attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    session_id: str,
    task_id: uuid.UUID,
    attempt: int = 1,
    **fields: Any,
) -> None:
    """Start `attempt` of a task and end it succeeded with `fields` (a commit, an answer, a
    cost), as its adapter would report them."""
    started = outcome_event(TaskStarted, session_id, task_id, attempt, branch="x", base_commit="y")
    assert await apply(sessionmaker, keys, started) == Outcome.APPLIED
    done = outcome_event(TaskSucceeded, session_id, task_id, attempt, exit_code=0, **fields)
    assert await apply(sessionmaker, keys, done) == Outcome.APPLIED


def mirror_commit(
    workspace: Path, session: dict[str, Any], files: dict[str, str], *, parent: str | None = None
) -> str:
    """Make a commit in a session's mirror on top of `parent` (default: the session's base)
    that writes `files`, as an agent's attempt would; return its hash."""
    mirror = workspace / "repos" / f"{session['id']}.git"
    tree = workspace / "scratch" / uuid.uuid4().hex
    git.git(
        "worktree",
        "add",
        "--detach",
        "--quiet",
        str(tree),
        parent or session["base_commit"],
        git_dir=mirror,
    )
    try:
        for name, content in files.items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_text(content)
        git.commit_all(tree, mirror, message="work", author=git.Author("t", "t@example.com"))
        return git.git("rev-parse", "HEAD", cwd=tree).stdout.strip()
    finally:
        git.git("worktree", "remove", "--force", str(tree), git_dir=mirror)
        shutil.rmtree(tree, ignore_errors=True)


async def tenant_client(
    api: httpx.AsyncClient, tenant: str, *, role: str = "operator", name: str | None = None
) -> httpx.AsyncClient:
    """A client of the same app that sends a new token of `tenant` (`<tenant>-<role>`)."""
    body = {"name": name or f"{tenant}-{role}", "role": role, "tenant": tenant}
    made = await api.post("/v1/tokens", json=body)
    assert made.status_code == 201, made.text
    return httpx.AsyncClient(
        transport=api._transport,
        base_url=str(api.base_url),
        headers={"Authorization": f"Bearer {made.json()['token']}"},
    )


async def live_worker(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    slots: int,
    agent: str = "shell",
    name: str | None = None,
) -> None:
    """A live adapter of `agent` with `slots` slots, as the registry mirror records one: the
    relay publishes as many task messages as it has room for (`runtime.dispatch`)."""
    sighting = fleet.Sighting(name=name or f"{agent}-live", agent=agent, concurrency=slots)
    async with sessionmaker() as db, db.begin():
        await fleet.mirror(db, [sighting])


async def assert_counted(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID | str
) -> tuple[int, int]:
    """The session's `task_count` and `edge_count` are what its rows hold (every kind of
    task); returns them."""
    sid = uuid.UUID(str(session_id))
    async with sessionmaker() as db:
        session = await db.get(Session, sid)
    assert session is not None
    mine = select(Task.id).where(Task.session_id == sid)
    tasks = await count_rows(sessionmaker, Task, Task.session_id == sid)
    edges = await count_rows(sessionmaker, TaskDependency, TaskDependency.task_id.in_(mine))
    assert (session.task_count, session.edge_count) == (tasks, edges)
    return session.task_count, session.edge_count
