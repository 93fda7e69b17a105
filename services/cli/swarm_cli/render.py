"""What the CLI shows: Rich tables and panels of sessions, tasks, attempts, workers and the
system, one-line renderings of timeline events, and the small formats they share (ages,
durations, token counts, costs). Every string from the server is escaped."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

__all__ = [
    "ATTEMPT_ENDS",
    "ENDED_STATES",
    "STATE_ORDER",
    "STATE_STYLE",
    "ago",
    "attempts_table",
    "between",
    "counts_line",
    "diff_table",
    "duration",
    "event_lines",
    "event_state",
    "event_summary",
    "failure",
    "gates_table",
    "money",
    "parse_time",
    "progress_line",
    "session_label",
    "session_panel",
    "session_state",
    "session_table",
    "state",
    "status_table",
    "system_panel",
    "task_panel",
    "task_table",
    "token_table",
    "tokens",
    "usage_line",
    "workers_table",
]

STATE_STYLE = {
    "pending": "dim",
    "queued": "cyan",
    "running": "bold blue",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "blocked": "magenta",
    "awaiting_approval": "bold yellow",
    "active": "blue",
    "draft": "dim",
    "finished": "green",
    "awaiting_review": "bold yellow",
    "suspended": "bold red",
    "paused": "yellow",
    "finalized": "green",
    "lost": "magenta",
    "rate_limited": "yellow",
    "passed": "green",
    "timeout": "bold red",
    "skipped": "dim",
    "online": "green",
    "offline": "dim",
    "running_mode": "green",
    "draining": "yellow",
    "stopped": "bold red",
}
STATE_ORDER = [
    "pending",
    "queued",
    "running",
    "awaiting_approval",
    "succeeded",
    "failed",
    "cancelled",
    "blocked",
]
ENDED_STATES = frozenset({"succeeded", "failed", "cancelled", "blocked"})
ATTEMPT_ENDS = frozenset(
    {"task.succeeded", "task.awaiting_approval", "task.failed", "attempt.cancelled", "attempt.lost"}
)
"""Timeline entries that close an attempt (and carry its outcome)."""


# --- small formats -------------------------------------------------------------------------


def state(value: str, label: str | None = None) -> str:
    """`value` as markup in its colour (shown as `label` when given)."""
    style = STATE_STYLE.get(value, "")
    text = escape(label if label is not None else value)
    return f"[{style}]{text}[/]" if style else text


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `2h04m`, `3d02h`; `-` when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def between(start: object, end: object = None, *, now: datetime | None = None) -> float | None:
    """Seconds from `start` to `end` (to now when `end` is missing)."""
    begin = parse_time(start)
    if begin is None:
        return None
    finish = parse_time(end) or now or datetime.now(UTC)
    return (finish - begin).total_seconds()


def ago(value: object, *, now: datetime | None = None) -> str:
    seconds = between(value, now=now)
    return "-" if seconds is None else f"{duration(seconds)} ago"


def tokens(value: object) -> str:
    """A token count (an int, or a usage mapping of input/output counts) as `12.3k`."""
    if isinstance(value, Mapping):
        total = sum(int(value.get(k) or 0) for k in ("input", "output"))
        if not total:
            total = sum(int(v) for v in value.values() if isinstance(v, int))
    elif isinstance(value, int | float):
        total = int(value)
    else:
        return "-"
    if total <= 0:
        return "-"
    if total < 1000:
        return str(total)
    if total < 1_000_000:
        return f"{total / 1000:.1f}k"
    return f"{total / 1_000_000:.2f}M"


def money(value: object) -> str:
    try:
        amount = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    return f"${amount:.4f}" if amount < 1 else f"${amount:.2f}"


def _short(value: object, n: int = 10) -> str:
    return str(value)[:n] if value else "-"


def _when(value: object) -> str:
    parsed = parse_time(value)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S") if parsed else "-"


def _clock(value: object) -> str:
    parsed = parse_time(value)
    return parsed.astimezone().strftime("%H:%M:%S") if parsed else "--:--:--"


def _one_line(value: object, limit: int = 80) -> str:
    text = " ".join(str(value or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- sessions ------------------------------------------------------------------------------


def session_label(session: Mapping[str, Any]) -> str:
    """The session's status as people think of it: an active session whose tasks all
    ended is `finished`."""
    status = str(session.get("status", "?"))
    if status == "active" and session.get("done"):
        return "finished"
    return status


def session_state(session: Mapping[str, Any]) -> str:
    """The session's status as markup: `finished` green when every task succeeded, yellow
    when some did not."""
    label = session_label(session)
    if label != "finished":
        return state(label)
    counts = session.get("counts") or {}
    clean = all(n == 0 for s, n in counts.items() if s != "succeeded")
    return f"[{'green' if clean else 'yellow'}]finished[/]"


def counts_line(counts: Mapping[str, int]) -> str:
    shown = [s for s in STATE_ORDER if counts.get(s)]
    shown += sorted(s for s in counts if s not in STATE_ORDER and counts[s])
    return "  ".join(f"{state(s)} {counts[s]}" for s in shown) or "[dim]no tasks[/]"


def _ended(counts: Mapping[str, int]) -> int:
    return sum(n for s, n in counts.items() if s in ENDED_STATES)


def session_table(sessions: Iterable[Mapping[str, Any]], *, short_ids: bool = False) -> Table:
    """Sessions, one a row; `short_ids` shows ids by their first 8 characters (which every
    command takes), for a narrow terminal."""
    table = Table(title="Sessions", header_style="bold", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("title", overflow="fold", min_width=12)
    table.add_column("status", no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("running", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("age", justify="right", no_wrap=True)
    for s in sessions:
        counts = s.get("counts") or {}
        failed = counts.get("failed", 0)
        table.add_row(
            str(s["id"])[:8] if short_ids else str(s["id"]),
            escape(str(s.get("title", ""))),
            session_state(s),
            f"{_ended(counts)}/{s.get('total', 0)}",
            str(counts.get("running", 0) or "-"),
            f"[bold red]{failed}[/]" if failed else "-",
            duration(between(s.get("created_at"))),
        )
    return table


def status_table(session: Mapping[str, Any]) -> Table:
    """Task counts by state (kept for callers of the first CLI)."""
    table = Table(title=f"{escape(session['title'])}  ({session['id']})", header_style="bold")
    table.add_column("state")
    table.add_column("tasks", justify="right")
    counts = session.get("counts", {})
    for s in STATE_ORDER:
        if counts.get(s):
            table.add_row(state(s), str(counts[s]))
    table.add_row("[bold]total[/]", str(session.get("total", 0)))
    return table


def progress_line(
    progress: Mapping[str, Any], *, width: int = 40, now: datetime | None = None
) -> Table:
    """A bar of ended/total with the percentage, the elapsed time and the ETA."""
    total = int(progress.get("total") or 0)
    ended = int(progress.get("ended") or 0)
    percent = progress.get("percent")
    if percent is None:
        percent = 100.0 * ended / total if total else 0.0
    elapsed = progress.get("elapsed_s")
    if elapsed is None:
        elapsed = between(progress.get("started_at"), progress.get("finished_at"), now=now)
    eta = progress.get("eta_s")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    finished = total > 0 and ended >= total
    bar = ProgressBar(
        total=max(total, 1), completed=ended, width=width, finished_style="green", style="grey23"
    )
    times = f"elapsed {duration(elapsed)}"
    if not finished:
        times += f"  ETA {duration(eta) if eta is not None else '?'}"
    grid.add_row(bar, f"[bold]{ended}/{total}[/] {float(percent):.0f}%  {times}")
    return grid


def usage_line(spend: Mapping[str, Any]) -> str:
    """`tokens 12.3k  cost $0.42` of a session or a task; empty when nothing was reported."""
    parts = []
    count = tokens(spend.get("tokens") or spend.get("usage"))
    if count != "-":
        parts.append(f"tokens {count}")
    if spend.get("cost_usd") is not None:
        parts.append(f"cost {money(spend.get('cost_usd'))}")
    return "  ".join(parts)


def session_panel(session: Mapping[str, Any], progress: Mapping[str, Any]) -> Panel:
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    fields.add_row("status", session_state(session))
    fields.add_row("repo", escape(f"{session.get('repo', '')} @ {session.get('base_ref', '')}"))
    if session.get("integration_branch"):
        head = _short(session.get("integration_head"))
        fields.add_row("integration", escape(f"{session['integration_branch']} ({head})"))
    if session.get("target_branch"):
        fields.add_row("target", escape(str(session["target_branch"])))
    fields.add_row(
        "created", f"{_when(session.get('created_at'))} ({ago(session.get('created_at'))})"
    )
    if session.get("finished_at"):
        fields.add_row("finished", _when(session.get("finished_at")))
    if session.get("goal"):
        fields.add_row("goal", escape(_one_line(session["goal"], 200)))
    usage = usage_line(progress)
    parts: list[RenderableType] = [
        fields,
        Text(""),
        progress_line(progress),
        counts_line(progress.get("counts") or session.get("counts") or {}),
    ]
    if usage:
        parts.append(usage)
    title = f"[bold]{escape(str(session.get('title', '')))}[/]  {session.get('id')}"
    return Panel(Group(*parts), title=title, title_align="left", expand=False)


# --- tasks ---------------------------------------------------------------------------------


def task_table(tasks: Iterable[Mapping[str, Any]]) -> Table:
    """Tasks, one a row; token and cost columns when an agent reported any."""
    rows = list(tasks)
    spend = any(t.get("tokens") or t.get("cost_usd") is not None for t in rows)
    table = Table(header_style="bold")
    columns = ["key", "status", "agent", "attempt", "depends on", "took", "commit", "reason"]
    for column in columns + (["tokens", "cost"] if spend else []):
        table.add_column(column, no_wrap=column in ("key", "status"))
    for t in rows:
        commit = ((t.get("result") or {}).get("commit") or "")[:10]
        took = between(t.get("started_at"), t.get("finished_at")) if t.get("started_at") else None
        cells = [
            escape(str(t["key"])),
            state(str(t["status"])),
            escape(str(t["agent"])),
            str(t["attempt"]),
            escape(", ".join(t.get("depends_on", []))),
            duration(took),
            commit,
            escape((t.get("reason") or "")[:60]),
        ]
        if spend:
            cells += [tokens(t.get("tokens") or t.get("usage")), money(t.get("cost_usd"))]
        table.add_row(*cells)
    return table


def task_panel(task: Mapping[str, Any], *, session_title: str | None = None) -> Panel:
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    status = state(str(task["status"]))
    if task.get("reason"):
        status += f"  [dim]{escape(str(task['reason']))}[/]"
    fields.add_row("status", status)
    if task.get("retry_at") and task["status"] == "pending":
        fields.add_row("retry at", _when(task["retry_at"]))
    session = str(task["session_id"])
    if session_title:
        session += f"  ({escape(session_title)})"
    fields.add_row("session", session)
    agent = str(task["agent"]) + (f" as {task['role']}" if task.get("role") else "")
    fields.add_row("agent", escape(agent))
    fields.add_row("attempt", f"{task['attempt']}  [dim](max_attempts {task['max_attempts']})[/]")
    if task.get("depends_on"):
        fields.add_row("depends on", escape(", ".join(task["depends_on"])))
    fields.add_row("branch", escape(str(task.get("branch") or "-")))
    if task.get("merge_status"):
        merge = str(task["merge_status"])
        if task.get("merge_commit"):
            merge += f" ({_short(task['merge_commit'])})"
        fields.add_row("merge", escape(merge))
    if task.get("conflict_files"):
        fields.add_row("conflicts", escape(", ".join(map(str, task["conflict_files"]))))
    fields.add_row("created", _when(task.get("created_at")))
    if task.get("started_at"):
        took = between(task["started_at"], task.get("finished_at"))
        fields.add_row("started", f"{_when(task['started_at'])}  (took {duration(took)})")
    if usage_line(task):
        fields.add_row("usage", usage_line(task))
    prompt = str(task.get("prompt") or "")
    if prompt:
        lines = prompt.splitlines() or [""]
        shown = "\n".join(lines[:6]) + (
            f"\n… ({len(lines) - 6} more lines)" if len(lines) > 6 else ""
        )
        fields.add_row("prompt", escape(shown))
    title = f"[bold]{escape(str(task['key']))}[/]"
    if task.get("title") and task["title"] != task["key"]:
        title += f"  {escape(str(task['title']))}"
    return Panel(fields, title=title, subtitle=str(task["id"]), title_align="left", expand=False)


def attempts_table(attempts: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Attempts", header_style="bold", title_justify="left")
    for column in ("#", "status", "worker", "started", "took", "exit", "reason", "tokens", "cost"):
        table.add_column(column, no_wrap=column != "reason")
    for a in attempts:
        took = between(a.get("started_at"), a.get("finished_at")) if a.get("started_at") else None
        reason = failure(a.get("reason"), a.get("error"))
        exit_code = a.get("exit_code")
        table.add_row(
            str(a["number"]),
            state(str(a["status"])),
            escape(str(a.get("worker") or "-")),
            _when(a.get("started_at")),
            duration(took),
            "-" if exit_code is None else str(exit_code),
            escape(_one_line(reason, 70)) or "-",
            tokens(a.get("usage")),
            money(a.get("cost_usd")),
        )
    return table


def gates_table(gates: Iterable[Mapping[str, Any]], *, attempt: int | None = None) -> Table:
    title = "Gates" + (f" (attempt {attempt})" if attempt else "")
    table = Table(title=title, header_style="bold", title_justify="left")
    for column in ("gate", "status", "exit", "took", "command"):
        table.add_column(column, no_wrap=column != "command")
    for g in gates:
        exit_code = g.get("exit_code")
        table.add_row(
            escape(str(g.get("name", "?"))),
            state(str(g.get("status", "?"))),
            "-" if exit_code is None else str(exit_code),
            duration(g.get("duration_s")),
            escape(_one_line(g.get("command") or g.get("reason") or "", 60)),
        )
    return table


def diff_table(diff: Mapping[str, Any]) -> RenderableType:
    files = diff.get("files") or []
    added = sum(int(f.get("additions") or 0) for f in files)
    removed = sum(int(f.get("deletions") or 0) for f in files)
    title = f"[bold]Changes[/] of attempt {diff.get('attempt')} ({_short(diff.get('commit'))})"
    if not files:
        return Text.from_markup(f"{title}: none")
    title += f": {len(files)} file(s), [green]+{added}[/] [red]-{removed}[/]"
    table = Table(header_style="bold")
    table.add_column("file", overflow="fold")
    table.add_column("+", justify="right", style="green")
    table.add_column("-", justify="right", style="red")
    for f in files:
        binary = f.get("additions") is None
        table.add_row(
            escape(str(f["path"])),
            "bin" if binary else str(f["additions"]),
            "" if binary else str(f.get("deletions") or 0),
        )
    return Group(Text.from_markup(title), table)


# --- timeline events -----------------------------------------------------------------------

_ITEM_MARK = {
    "message": ("»", ""),
    "tool_call": ("→", "cyan"),
    "tool_result": ("←", "dim"),
    "file_change": ("✎", "green"),
    "init": ("•", "dim"),
}


def _activity(data: Mapping[str, Any]) -> list[str]:
    """The items of a `task.progress` event, one line each."""
    inner = data.get("data") if isinstance(data.get("data"), Mapping) else {}
    items = inner.get("items") if isinstance(inner, Mapping) else None
    if not isinstance(items, list) or not items:
        text = _one_line(data.get("text"), 200)
        return [f"» {escape(text)}"] if text else []
    lines = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        kind = str(item.get("kind", "?"))
        mark, style = _ITEM_MARK.get(kind, ("•", ""))
        details = item.get("data") if isinstance(item.get("data"), Mapping) else {}
        if kind == "tool_result" and details and details.get("is_error"):
            style = "red"
        label = "" if kind in _ITEM_MARK else f"{kind}: "
        text = escape(label + _one_line(item.get("text"), 160))
        lines.append(f"[{style}]{mark} {text}[/]" if style else f"{mark} {text}")
    dropped = inner.get("dropped") if isinstance(inner, Mapping) else 0
    if isinstance(dropped, int) and dropped > 0:
        lines.append(f"[dim]… {dropped} more item(s) not kept[/]")
    return lines


def failure(reason: object, error: object) -> str:
    """`reason: error`, without saying the same twice (`exit_code: exited with code 3`)."""
    reason, error = str(reason or ""), str(error or "")
    if not error or reason == error:
        return reason
    if not reason or reason == "exit_code":
        return error
    return f"{reason}: {error}"


def _gates_brief(gates: object) -> str:
    if not isinstance(gates, list) or not gates:
        return ""
    shown = [f"{g.get('name')} {g.get('status')}" for g in gates if isinstance(g, Mapping)]
    return "gates: " + ", ".join(shown)


def _outcome(kind: str, data: Mapping[str, Any]) -> str:
    parts = []
    if data.get("duration_s") is not None:
        parts.append(f"in {duration(data['duration_s'])}")
    if kind in ("task.succeeded", "task.awaiting_approval"):
        files = data.get("changed_files") or []
        parts.append(f"commit {_short(data.get('commit'))}, {len(files)} file(s) changed")
    else:
        parts.append(_one_line(failure(data.get("reason"), data.get("error")), 120))
        if data.get("will_retry"):
            parts.append(
                "will retry" + (f" at {_clock(data['retry_at'])}" if data.get("retry_at") else "")
            )
    if data.get("usage") or data.get("cost_usd") is not None:
        parts.append(f"tokens {tokens(data.get('usage'))} {money(data.get('cost_usd'))}")
    gates = _gates_brief(data.get("gates"))
    if gates:
        parts.append(gates)
    return "; ".join(p for p in parts if p)


_STATE_OF = {
    "task.created": "pending",
    "task.queued": "queued",
    "task.requeued": "queued",
    "task.started": "running",
    "task.succeeded": "succeeded",
    "task.failed": "failed",
    "task.cancelled": "cancelled",
    "task.blocked": "blocked",
    "task.unblocked": "pending",
    "task.retried": "pending",
    "task.approved": "succeeded",
    "task.awaiting_approval": "awaiting_approval",
    "attempt.cancelled": "pending",
    "attempt.lost": "lost",
}


def event_state(event: Mapping[str, Any]) -> str | None:
    """The task state an event moves its task to, if it moves it."""
    kind = str(event.get("type", ""))
    if kind == "task.failed" and (event.get("data") or {}).get("will_retry"):
        return "pending"
    return _STATE_OF.get(kind)


def event_summary(event: Mapping[str, Any]) -> str:
    """What happened, in a few words of markup (without time and task)."""
    kind = str(event.get("type", "?"))
    data: Mapping[str, Any] = event.get("data") or {}
    if kind == "task.progress":
        return escape(_one_line(data.get("text"), 120))
    target = event_state(event)
    subject, _, verb = kind.partition(".")
    words = verb.replace("_", " ") if subject == "task" else f"{subject} {verb.replace('_', ' ')}"
    label = state(target, words) if target else escape(words)
    extra = ""
    if kind == "task.started":
        extra = f"on {data.get('worker', '?')}"
    elif kind in ATTEMPT_ENDS:
        extra = _outcome(kind, data)
    elif kind == "task.blocked":
        extra = f"by {data.get('blocked_by', '?')}"
    elif kind in ("task.merged", "task.conflict"):
        extra = _short(data.get("merge_commit") or data.get("commit") or "", 10)
        files = data.get("files") or data.get("conflict_files")
        if files:
            extra += f" {', '.join(map(str, files))[:100]}"
    elif kind == "session.finished":
        extra = ", ".join(f"{k} {v}" for k, v in (data.get("counts") or {}).items())
    elif kind in ("task.retried", "task.cancelled") and data.get("from"):
        extra = f"(was {data['from']})"
    text = f"{label} {escape(extra)}".rstrip()
    actor = str(event.get("actor") or "")
    if actor.startswith("token:"):  # a person (or a script) did it
        text += f"  [dim]by {escape(actor.removeprefix('token:'))}[/]"
    return text


def event_lines(
    event: Mapping[str, Any], *, key: str | None = None, brief: bool = False
) -> list[str]:
    """A timeline entry as lines of markup: time, attempt, (task key), what happened; a
    `task.progress` entry gives one line per transcript item (one in all when `brief`)."""
    when = _clock(event.get("created_at"))
    attempt = f"#{event['attempt']}" if event.get("attempt") else "  "
    who = f"{escape(key):<16} " if key is not None else ""
    head = f"[dim]{when}[/] {attempt:<3} {who}"
    if event.get("type") == "task.progress" and brief:
        return [head + "[dim]» " + event_summary(event) + "[/]"]
    if event.get("type") == "task.progress":
        pad = " " * (len(when) + 5 + (17 if key is not None else 0))
        items = _activity(event.get("data") or {})
        return [head + items[0]] + [pad + line for line in items[1:]] if items else []
    return [head + event_summary(event)]


# --- workers and the system ----------------------------------------------------------------


def workers_table(workers: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Workers", header_style="bold", title_justify="left")
    for column in ("name", "agent", "status", "busy", "running", "heartbeat", "host", "up"):
        table.add_column(column, no_wrap=column not in ("running", "host"))
    for w in workers:
        alive = bool(w.get("alive"))
        status = str(w.get("status", "?"))
        label = state("online" if alive else "offline", "alive" if alive else f"{status}, gone")
        running: list[Any] = w["running"] if isinstance(w.get("running"), list) else []
        tasks = ", ".join(
            f"{r.get('task_key') or _short(r.get('task_id'), 8)}#{r.get('attempt', '?')}"
            for r in running
        )
        beat = w.get("last_heartbeat_at") or w.get("last_seen_at")
        host = str(w.get("host") or "-") + (f" pid {w['pid']}" if w.get("pid") else "")
        table.add_row(
            escape(str(w["name"])),
            escape(str(w.get("agent", "?"))),
            label,
            f"{len(running)}/{w.get('concurrency', '?')}",
            escape(tasks) or "-",
            ago(beat),
            escape(host),
            duration(between(w.get("started_at"))) if alive else "-",
        )
    return table


_MODE_TEXT = {
    "running": "adapters take work",
    "draining": "adapters finish what they run and take nothing new",
    "stopped": "emergency stop: no agent runs; interrupted attempts run again after resume",
}


def system_panel(system: Mapping[str, Any]) -> Panel:
    mode = str(system.get("mode", "?"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    style_key = "running_mode" if mode == "running" else mode
    grid.add_row("mode", f"{state(style_key, mode)}  [dim]{_MODE_TEXT.get(mode, '')}[/]")
    if system.get("changed_by"):
        grid.add_row(
            "set by", f"{escape(str(system['changed_by']))}, {ago(system.get('changed_at'))}"
        )
    grid.add_row("running", str(system.get("running", 0)))
    grid.add_row("queued", str(system.get("queued", 0)))
    grid.add_row("workers", f"{system.get('workers_alive', 0)} alive")
    return Panel(grid, title="[bold]System[/]", title_align="left", expand=False)


# --- tokens --------------------------------------------------------------------------------


def token_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Tokens")
    for column in ("id", "name", "role", "tenant", "prefix", "created", "last used", "revoked"):
        table.add_column(column)
    for t in rows:
        table.add_row(
            str(t["id"]),
            escape(t["name"]),
            t["role"],
            escape(t["tenant"] or "-"),
            escape(t["prefix"]) + "…",
            (t["created_at"] or "")[:19],
            (t["last_used_at"] or "-")[:19],
            (t["revoked_at"] or "-")[:19],
        )
    return table
