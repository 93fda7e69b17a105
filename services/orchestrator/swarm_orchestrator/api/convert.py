"""Database rows to API bodies; long lists of tasks as JSON built off the event loop and sent
a slice at a time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter
from sqlalchemy import Row

from swarm_common.jsontext import clipped
from swarm_orchestrator.api.schemas import SessionPublic, TaskPublic
from swarm_orchestrator.db.models import Session, Task
from swarm_orchestrator.graph.progress import Spend
from swarm_orchestrator.graph.scheduler import branch_name, integration_branch

__all__ = ["MAX_SHOWN_DEPTH", "session_public", "shown", "task_public", "tasks_response"]

_OPEN = {"pending", "queued", "running", "awaiting_approval"}

MAX_SHOWN_DEPTH = 128
"""Arrays and objects nested deeper in a stored value (a spec, a result) are shown clipped:
a value stored before request bodies had a depth limit is served, not a 500. No body deeper
than this is accepted now (`max_json_depth` is at most 128)."""

SLICE = 250
"""Tasks serialized at once, and sent as one chunk, by `tasks_response`."""

_TASKS = TypeAdapter(list[TaskPublic])


def shown(value: Any) -> Any:
    """A stored JSON value as the API may serve it (see `MAX_SHOWN_DEPTH`)."""
    return clipped(value, MAX_SHOWN_DEPTH)


def session_public(session: Session, counts: dict[str, int]) -> SessionPublic:
    total = sum(counts.values())
    done = total > 0 and not any(counts.get(s) for s in _OPEN)
    return SessionPublic.model_validate(session).model_copy(
        update={
            "counts": counts,
            "total": total,
            "done": done and session.finished_at is not None,
            "integration_branch": integration_branch(session.id),
        }
    )


def task_public(
    task: Task | Row[Any], depends_on: Iterable[str] = (), spend: Spend | None = None
) -> TaskPublic:
    """A task (an ORM object, or a row of `sessions.task_rows`) as the API shows it."""
    update: dict[str, object] = {
        "depends_on": list(depends_on),
        "branch": branch_name(task.session_id, task.key),
        "result": shown(task.result),
    }
    if spend is not None:
        update.update(usage=spend.usage or None, tokens=spend.tokens, cost_usd=spend.cost_usd)
    fields = task._mapping if isinstance(task, Row) else task
    return TaskPublic.model_validate(fields).model_copy(update=update)


async def tasks_response(
    tasks: Sequence[Row[Any]],
    deps: Mapping[uuid.UUID, Sequence[str]],
    spend: Mapping[uuid.UUID, Spend] | None = None,
    *,
    status_code: int = 200,
) -> StreamingResponse:
    """`tasks` as a JSON list of `TaskPublic` (with their dependencies, and their spend when
    `spend` is given). Twenty thousand tasks take seconds to convert, serialize and pass
    through the redaction filter, which must not hold the event loop (everyone else's
    requests): a worker thread converts and serializes them, a slice at a time (the loop
    gets the interpreter back between slices), and the list is sent a slice a chunk, each
    redacted on its own. A slice ends between two tasks, so no chunk cuts a value in two."""
    parts = await asyncio.to_thread(_tasks_json, tasks, deps, spend)
    return StreamingResponse(
        _json_list(parts), status_code=status_code, media_type="application/json"
    )


def _tasks_json(
    tasks: Sequence[Row[Any]],
    deps: Mapping[uuid.UUID, Sequence[str]],
    spend: Mapping[uuid.UUID, Spend] | None,
) -> list[bytes]:
    """The tasks as JSON, a slice of them a part, without the list's brackets."""
    parts = []
    for start in range(0, len(tasks), SLICE):
        page = [
            task_public(t, deps.get(t.id, ()), None if spend is None else spend.get(t.id, Spend()))
            for t in tasks[start : start + SLICE]
        ]
        parts.append(_TASKS.dump_json(page)[1:-1])
    return parts


async def _json_list(parts: list[bytes]) -> AsyncIterator[bytes]:
    yield b"["
    for i, part in enumerate(parts):
        await asyncio.sleep(0)  # a send rarely waits: let other requests run between chunks
        yield b"," + part if i else part
    yield b"]"
