"""The states the CLI shows (of tasks, sessions, attempts, gates, workers and the system),
their colours, and the order tasks' states are counted in."""

from __future__ import annotations

from rich.markup import escape

__all__ = ["ENDED_STATES", "STATE_ORDER", "STATE_STYLE", "state"]

STATE_STYLE = {
    "pending": "dim",
    "queued": "cyan",
    "running": "bold blue",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "blocked": "magenta",
    "awaiting_approval": "bold yellow",
    "reviewing": "bold cyan",
    "racing": "bold blue",
    "PASS": "green",
    "FAIL": "bold red",
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
    "racing",
    "reviewing",
    "awaiting_approval",
    "succeeded",
    "failed",
    "cancelled",
    "blocked",
]
ENDED_STATES = frozenset({"succeeded", "failed", "cancelled", "blocked"})


def state(value: str, label: str | None = None) -> str:
    """`value` as markup in its colour (shown as `label` when given)."""
    style = STATE_STYLE.get(value, "")
    text = escape(label if label is not None else value)
    return f"[{style}]{text}[/]" if style else text
