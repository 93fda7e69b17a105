"""Following a session in the terminal until it is over.

`follow` prints task transitions as they happen (`swarm submit --wait`, `swarm up --demo`).
`watch` is `swarm watch`: on a terminal a live screen (a progress bar with elapsed time and
ETA, counts by state, the running tasks with their worker and latest activity, the recent
events), elsewhere one line per event and a summary at the end, or, with `--json`, every
event as a JSON line. It follows the session's event stream and returns once the session is
over (every task ended and merged, or the session cancelled).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from swarm_cli import render
from swarm_cli.client import ApiClient, CliError
from swarm_cli.options import print_json_line
from swarm_cli.stream import EventPump

__all__ = ["SessionView", "follow", "is_over", "session_progress", "watch"]

Mode = Literal["live", "lines", "json"]

REFRESH_S = 1.0
"""How often the progress (elapsed time, ETA, counts) is read again."""
SETTLE_S = 0.5
"""Once the session is over and its end event came, events still arriving within this long
are shown."""
MAX_SETTLE_S = 5.0
"""Once the session is over, give up waiting for its end event after this long without
events (a session finalized by other means)."""
RUNNING_SHOWN = 12
RECENT_SHOWN = 8
_OVER_EVENTS = frozenset({"session.finished", "session.cancelled"})

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
    style = render.STATE_STYLE.get(state, "")
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
    the timeout, or when `stop` is set). Polls, so `stop` is honoured within `poll_s`."""
    keys: dict[str, str] = {}
    after = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        events = client.get(f"/v1/sessions/{session_id}/events", after=after, limit=1000)
        for event in events:
            after = event["id"]  # pages come in stream order: the last one seen counts
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


# --- swarm watch ---------------------------------------------------------------------------


def is_over(session: dict[str, Any]) -> bool:
    return bool(session.get("done")) or session.get("status") in ("cancelled", "finalized")


def session_progress(
    client: ApiClient, session: dict[str, Any], *, endpoint: bool = True
) -> dict[str, Any] | None:
    """`GET /v1/sessions/{id}/progress`; None when the server has no such endpoint (then
    `derived_progress` stands in)."""
    if not endpoint:
        return None
    try:
        progress: dict[str, Any] = client.get(f"/v1/sessions/{session['id']}/progress")
    except CliError as exc:
        if exc.status == 404 and exc.code == "not_found":  # an older server
            return None
        raise
    return progress


def derived_progress(session: dict[str, Any]) -> dict[str, Any]:
    """What the progress endpoint tells, as far as the session itself tells it."""
    counts: dict[str, int] = session.get("counts") or {}
    total = int(session.get("total") or sum(counts.values()))
    ended = sum(n for s, n in counts.items() if s in render.ENDED_STATES)
    return {
        "session_id": session.get("id"),
        "status": session.get("status"),
        "total": total,
        "ended": ended,
        "percent": 100.0 * ended / total if total else 0.0,
        "counts": counts,
        "running": counts.get("running", 0),
        "queued": counts.get("queued", 0),
        "started_at": session.get("created_at"),
        "finished_at": session.get("finished_at"),
        "elapsed_s": None,
        "eta_s": None,
    }


@dataclass
class _Task:
    key: str
    agent: str
    status: str
    attempt: int
    started_at: str | None = None
    worker: str | None = None
    activity: str = ""


class SessionView:
    """What the live screen shows, kept up to date by events and progress reads."""

    def __init__(self, session: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
        self.session = session
        self.progress: dict[str, Any] = derived_progress(session)
        self.tasks: dict[str, _Task] = {}
        self.unknown = False
        self.recent: deque[str] = deque(maxlen=RECENT_SHOWN)
        self.set_tasks(tasks)

    def set_tasks(self, tasks: list[dict[str, Any]]) -> None:
        for t in tasks:
            row = self.tasks.get(str(t["id"]))
            if row is None:
                self.tasks[str(t["id"])] = _Task(
                    key=str(t["key"]),
                    agent=str(t["agent"]),
                    status=str(t["status"]),
                    attempt=int(t.get("attempt") or 0),
                    started_at=t.get("started_at"),
                )
            else:
                row.status, row.started_at = str(t["status"]), t.get("started_at")
        self.unknown = False

    def key(self, task_id: object) -> str | None:
        if not task_id:
            return None
        row = self.tasks.get(str(task_id))
        return row.key if row else str(task_id)[:8]

    def apply(self, event: dict[str, Any]) -> None:
        task_id = event.get("task_id")
        row = self.tasks.get(str(task_id)) if task_id else None
        if task_id and row is None:
            self.unknown = True
        data: dict[str, Any] = event.get("data") or {}
        if row is not None:
            target = render.event_state(event)
            if target is not None:
                row.status = "queued" if target == "lost" else target
            if event.get("attempt"):
                row.attempt = int(event["attempt"])
            if event["type"] == "task.started":
                row.worker = data.get("worker")
                row.started_at = data.get("at") or event.get("created_at")
                row.activity = ""
            elif event["type"] == "task.progress":
                row.activity = str(data.get("text") or "")
        lines = render.event_lines(event, key=self.key(task_id) or "", brief=True)
        if lines:
            self.recent.append(lines[0])

    def update(self, session: dict[str, Any], progress: dict[str, Any] | None) -> None:
        self.session = session
        self.progress = progress if progress is not None else derived_progress(session)

    def summary(self) -> RenderableType:
        s = self.session
        head = Text.from_markup(
            f"[bold]{escape(str(s.get('title', '')))}[/]  [dim]{s.get('id')}[/]  "
            f"{render.session_state(s)}"
        )
        parts: list[RenderableType] = [
            head,
            render.progress_line(self.progress),
            Text.from_markup(render.counts_line(self.progress.get("counts") or {})),
        ]
        usage = render.usage_line(self.progress)
        if usage:
            parts.append(Text(usage, style="dim"))
        return Group(*parts)

    def running_table(self) -> Table | None:
        running = [t for t in self.tasks.values() if t.status == "running"]
        if not running:
            return None
        running.sort(key=lambda t: t.started_at or "")
        table = Table(header_style="bold", title="Running", title_justify="left", expand=False)
        for column in ("task", "agent", "worker", "try", "for", "latest activity"):
            table.add_column(column, no_wrap=True, overflow="ellipsis")
        now = datetime.now(UTC)
        for t in running[:RUNNING_SHOWN]:
            table.add_row(
                escape(t.key),
                escape(t.agent),
                escape(t.worker or "-"),
                f"#{t.attempt}",
                render.duration(render.between(t.started_at, now=now)),
                escape(" ".join(t.activity.split())[:70]) or "[dim]-[/]",
            )
        if len(running) > RUNNING_SHOWN:
            table.add_row(f"… {len(running) - RUNNING_SHOWN} more", "", "", "", "", "")
        return table

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = [self.summary()]
        table = self.running_table()
        if table is not None:
            parts += [Text(""), table]
        if self.recent:
            parts += [Text(""), Text("Recent", style="bold")]
            for line in self.recent:
                text = Text.from_markup(line, overflow="ellipsis")
                text.no_wrap = True
                parts.append(text)
        return Group(*parts)


def _printer(mode: Mode, view: SessionView, out: Console) -> Callable[[dict[str, Any]], None]:
    if mode == "json":
        return print_json_line
    if mode == "lines":

        def lines(event: dict[str, Any]) -> None:
            if event.get("type") == "task.created":  # `session.created` says it for all
                return
            key = view.key(event.get("task_id")) or ""
            for line in render.event_lines(event, key=key, brief=True):
                out.print(line, highlight=False, soft_wrap=True)

        return lines
    return lambda _: None


def watch(client: ApiClient, session_id: str, out: Console, *, mode: Mode) -> dict[str, Any]:
    """Follow the session until it is over; return it (Ctrl-C raises KeyboardInterrupt)."""
    session: dict[str, Any] = client.get(f"/v1/sessions/{session_id}")
    view = SessionView(session, client.get(f"/v1/sessions/{session_id}/tasks"))
    has_endpoint = True
    show = _printer(mode, view, out)

    def refresh() -> bool:
        nonlocal has_endpoint
        fresh: dict[str, Any] = client.get(f"/v1/sessions/{session_id}")
        progress = session_progress(client, fresh, endpoint=has_endpoint)
        has_endpoint = progress is not None
        view.update(fresh, progress)
        if view.unknown:
            view.set_tasks(client.get(f"/v1/sessions/{session_id}/tasks"))
        return is_over(fresh)

    with EventPump(client, f"/v1/sessions/{session_id}/events") as pump:
        # Redrawn from this thread only: the view must not change while it is drawn.
        live = Live(view, console=out, auto_refresh=False) if mode == "live" else None
        if live is not None:
            live.start(refresh=True)
        try:
            _loop(pump, view, show, refresh, redraw=live.refresh if live else lambda: None)
        finally:
            if live is not None:
                live.stop()
    if mode == "lines":
        out.print()
        out.print(view.summary())
    return view.session


def _loop(
    pump: EventPump,
    view: SessionView,
    show: Callable[[dict[str, Any]], None],
    refresh: Callable[[], bool],
    *,
    redraw: Callable[[], None],
) -> None:
    """Apply and show events as they come, read the progress every `REFRESH_S` (and at an
    end event), and return once the session is over and its events have been shown: the
    stream replays the history first, so the end may be known before its event arrives."""
    next_refresh = 0.0
    over = False
    ended = False  # an end event arrived (perhaps an old one, from the replay)
    quiet_since = time.monotonic()
    while True:
        event = pump.get(0.25)
        now = time.monotonic()
        check = now >= next_refresh
        while event is not None:
            view.apply(event)
            show(event)
            quiet_since = now
            if event["type"] in _OVER_EVENTS:
                check = ended = True
            event = pump.get(0)
        if not over and check:
            next_refresh = now + REFRESH_S
            over = refresh()
        redraw()
        quiet = time.monotonic() - quiet_since
        if over and ((ended and quiet >= SETTLE_S) or quiet >= MAX_SETTLE_S):
            return
