"""What a SESSION or TASK argument may be, and the ids they stand for.

SESSION: a session id, or the start of one (`3f2a`) when it names a single session among
the newest thousand (listed ones first, then archived ones). TASK: a task id, or
`SESSION/KEY` (`3f2a/build`): the task with that key in that session.
"""

from __future__ import annotations

import uuid
from typing import Any

from swarm_cli.client import ApiClient, CliError

__all__ = ["is_uuid", "session_id", "task_id"]

SESSION_SCAN = 1000


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def session_id(client: ApiClient, ref: str) -> str:
    ref = ref.strip()
    if is_uuid(ref):
        return ref
    prefix = ref.lower()
    if not prefix or any(c not in "0123456789abcdef-" for c in prefix):
        raise CliError(
            f"{ref!r} is not a session id (nor the start of one)", code="session_not_found"
        )
    sessions: list[dict[str, Any]] = client.get("/v1/sessions", limit=SESSION_SCAN)
    found = [s for s in sessions if str(s["id"]).startswith(prefix)]
    if not found:
        archived = client.get("/v1/sessions", limit=SESSION_SCAN, archived="true")
        found = [s for s in archived if str(s["id"]).startswith(prefix)]
    if not found:
        raise CliError(f"no session id starts with {ref!r}", code="session_not_found")
    if len(found) > 1:
        shown = ", ".join(str(s["id"]) for s in found[:5])
        raise CliError(
            f"{ref!r} starts {len(found)} session ids ({shown}); give more of it",
            code="ambiguous",
        )
    return str(found[0]["id"])


def task_id(client: ApiClient, ref: str) -> str:
    ref = ref.strip()
    if is_uuid(ref):
        return ref
    session_ref, slash, key = ref.partition("/")
    if not slash or not key:
        raise CliError(
            f"{ref!r} is not a task: give a task id or SESSION/KEY (like 3f2a/build)",
            code="task_not_found",
        )
    sid = session_id(client, session_ref)
    tasks: list[dict[str, Any]] = client.get(f"/v1/sessions/{sid}/tasks")
    for task in tasks:
        if task["key"] == key:
            return str(task["id"])
    raise CliError(f"session {sid} has no task {key!r}", code="task_not_found")
