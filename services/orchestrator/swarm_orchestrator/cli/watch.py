"""Follow a session's timeline in the terminal until every task has ended."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from swarm_orchestrator.cli.client import ApiClient
from swarm_orchestrator.cli.render import STATE_STYLE

__all__ = ["follow"]

_SHOWN = {
    "task.queued": "queued",
    "task.started": "running",
    "task.succeeded": "succeeded",
    "task.failed": "failed",
    "task.cancelled": "cancelled",
    "task.blocked": "blocked",
    "task.retried": "pending",
    "attempt.cancelled": "pending",
}


def _line(event: dict[str, Any], key: str) -> str:
    state = _SHOWN[event["type"]]
    data = event.get("data", {})
    style = STATE_STYLE.get(state, "")
    extra = ""
    if event["type"] == "task.started":
        extra = f"on {data.get('worker', '?')}"
    elif event["type"] == "task.succeeded":
        files = data.get("changed_files") or []
        extra = f"commit {str(data.get('commit') or '')[:10]}, {len(files)} file(s) changed"
    elif event["type"] == "task.failed":
        extra = f"{data.get('reason', '')}: {data.get('error', '')}"[:100]
        if data.get("will_retry"):
            extra += " (will retry)"
    elif event["type"] == "task.blocked":
        extra = f"by {data.get('blocked_by', '?')}"
    when = event["created_at"][11:19]
    attempt = f"#{event['attempt']}" if event.get("attempt") else ""
    return f"{when}  {escape(key):<24} [{style}]{state:<10}[/] {attempt:<3} {escape(extra)}"


def follow(
    client: ApiClient,
    session_id: str,
    console: Console,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Print task transitions as they happen; return the session once it is done (or at
    the timeout, or when `stop` is set)."""
    keys: dict[str, str] = {}
    after = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        events = client.get(f"/v1/sessions/{session_id}/events", after=after, limit=1000)
        for event in events:
            after = max(after, event["id"])
            task_id = event.get("task_id")
            if event["type"] not in _SHOWN or not task_id:
                continue
            if task_id not in keys:
                keys.update(
                    {t["id"]: t["key"] for t in client.get(f"/v1/sessions/{session_id}/tasks")}
                )
            console.print(_line(event, keys.get(task_id, task_id[:8])), highlight=False)
        if not events:
            session: dict[str, Any] = client.get(f"/v1/sessions/{session_id}")
            if session.get("done"):
                return session
            if deadline is not None and time.monotonic() > deadline:
                return session
            if stop is not None and stop.wait(poll_s):
                return session
            if stop is None:
                time.sleep(poll_s)
