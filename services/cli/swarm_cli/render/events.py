"""Timeline entries as lines of markup: what an event did (and to which state it moved its
task), the agent's transcript items, and the outcome of an attempt."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.markup import escape

from swarm_cli.render.formats import clock, duration, failure, money, one_line, short, tokens
from swarm_cli.render.states import state

__all__ = ["ATTEMPT_ENDS", "event_lines", "event_state", "event_summary"]

ATTEMPT_ENDS = frozenset(
    {
        "task.succeeded",
        "task.awaiting_approval",
        "task.reviewing",
        "task.failed",
        "attempt.cancelled",
        "attempt.lost",
    }
)
"""Timeline entries that close an attempt (and carry its outcome)."""


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
        text = one_line(data.get("text"), 200)
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
        text = escape(label + one_line(item.get("text"), 160))
        lines.append(f"[{style}]{mark} {text}[/]" if style else f"{mark} {text}")
    dropped = inner.get("dropped") if isinstance(inner, Mapping) else 0
    if isinstance(dropped, int) and dropped > 0:
        lines.append(f"[dim]… {dropped} more item(s) not kept[/]")
    return lines


def _gates_brief(gates: object) -> str:
    if not isinstance(gates, list) or not gates:
        return ""
    shown = [f"{g.get('name')} {g.get('status')}" for g in gates if isinstance(g, Mapping)]
    return "gates: " + ", ".join(shown)


def _outcome(kind: str, data: Mapping[str, Any]) -> str:
    parts = []
    if data.get("duration_s") is not None:
        parts.append(f"in {duration(data['duration_s'])}")
    if kind in ("task.succeeded", "task.awaiting_approval", "task.reviewing"):
        files = data.get("changed_files") or []
        parts.append(f"commit {short(data.get('commit'))}, {len(files)} file(s) changed")
    else:
        parts.append(one_line(failure(data.get("reason"), data.get("error")), 120))
        if data.get("will_retry"):
            parts.append(
                "will retry" + (f" at {clock(data['retry_at'])}" if data.get("retry_at") else "")
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
    "task.reviewing": "reviewing",
    "task.racing": "racing",
    "task.race_won": "succeeded",
    "task.race_lost": "failed",
    "task.changes_requested": "pending",
    "task.review_failed": "failed",
    "attempt.cancelled": "pending",
    "attempt.lost": "lost",
}


_SAYS_WHY = frozenset(
    {"task.routed", "task.unroutable", "task.rerouting", "session.suspended", "session.resumed"}
)
"""Entries whose `reason` is what they say: the kind chosen and why, why none could be, why
a session was suspended or resumed."""


def event_state(event: Mapping[str, Any]) -> str | None:
    """The task state an event moves its task to, if it moves it."""
    kind = str(event.get("type", ""))
    data = event.get("data") or {}
    if kind == "task.failed" and data.get("will_retry"):
        return "pending"
    if kind == "task.reviewed":  # a verdict: merged, sent back, or failed for good
        if data.get("verdict") == "PASS":
            return "succeeded"
        return "pending" if data.get("will_retry") else "failed"
    return _STATE_OF.get(kind)


def event_summary(event: Mapping[str, Any]) -> str:
    """What happened, in a few words of markup (without time and task)."""
    kind = str(event.get("type", "?"))
    data: Mapping[str, Any] = event.get("data") or {}
    if kind == "task.progress":
        return escape(one_line(data.get("text"), 120))
    target = event_state(event)
    subject, _, verb = kind.partition(".")
    words = verb.replace("_", " ") if subject == "task" else f"{subject} {verb.replace('_', ' ')}"
    label = state(target, words) if target else escape(words)
    why = escape(one_line(data.get("reason"), 160))
    extra = why if kind in _SAYS_WHY else _handoff_brief(kind, data)
    if kind == "task.started":
        extra = f"on {data.get('worker', '?')}"
    elif kind in ATTEMPT_ENDS:
        extra = _outcome(kind, data)
    elif kind == "task.blocked":
        extra = f"by {data.get('blocked_by', '?')}"
    elif kind == "task.reviewed":
        issues = data.get("critical_issues") or []
        extra = (
            f"{state(str(data.get('verdict')))} by {escape(str(data.get('reviewer', '?')))} "
            f"(round {data.get('round', '?')} of {data.get('max_rounds', '?')}): "
            + escape(one_line(data.get("summary"), 100))
            + (f"; {len(issues)} critical issue(s)" if issues else "")
        )
    elif kind == "task.changes_requested":
        extra = escape(one_line(data.get("comment"), 100))
    elif kind in ("task.merged", "task.conflict"):
        extra = short(data.get("merge_commit") or data.get("commit") or "", 10)
        files = data.get("files") or data.get("conflict_files")
        if files:
            extra += f" {', '.join(map(str, files))[:100]}"
    elif kind in ("session.finished", "session.budget_warning"):
        extra = _session_brief(kind, data)
    elif kind in ("task.retried", "task.cancelled") and data.get("from"):
        extra = f"(was {data['from']})"
    text = f"{label} {escape(extra)}".rstrip()
    actor = str(event.get("actor") or "")
    if actor.startswith("token:"):  # a person (or a script) did it
        text += f"  [dim]by {escape(actor.removeprefix('token:'))}[/]"
    return text


def _session_brief(kind: str, data: Mapping[str, Any]) -> str:
    """A finished session's counts; a budget warning's limit and what is spent of it."""
    if kind == "session.budget_warning":
        return f"{data.get('limit')}: {data.get('spent')} of {data.get('amount')} spent"
    return ", ".join(f"{k} {v}" for k, v in (data.get("counts") or {}).items())


_HANDOFFS = frozenset({"task.handoff", "blackboard.written", "task.proposed", "task.delegated"})


def _handoff_brief(kind: str, data: Mapping[str, Any]) -> str:
    """A handoff's summary, the keys written, a proposal's fate, who proposed a task ("" for
    any other entry)."""
    if kind not in _HANDOFFS:
        return ""
    if kind == "task.handoff":
        return one_line(data.get("summary"), 100)
    if kind == "blackboard.written":
        return ", ".join(map(str, data.get("keys") or []))[:100]
    if kind == "task.proposed":
        why = f": {one_line(data.get('reason'), 100)}" if data.get("reason") else ""
        return f"{data.get('key', '?')} ({data.get('status', '?')}){why}"
    return f"proposed by {data.get('proposed_by', '?')}"


def event_lines(
    event: Mapping[str, Any], *, key: str | None = None, brief: bool = False
) -> list[str]:
    """A timeline entry as lines of markup: time, attempt, (task key), what happened; a
    `task.progress` entry gives one line per transcript item (one in all when `brief`)."""
    when = clock(event.get("created_at"))
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
