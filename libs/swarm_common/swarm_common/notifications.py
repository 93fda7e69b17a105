"""The events webhooks tell of, by name: what the server sends
(`swarm_orchestrator.webhooks.events`) and what `swarm webhooks add --event` accepts."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["EVENTS", "EventName"]

EventName = Literal[
    "session.finalized",
    "session.awaiting_review",
    "task.awaiting_approval",
    "task.failed",
    "checkpoint.passed",
    "checkpoint.failed",
    "kind.lost",
    "session.budget_warning",
    "session.budget_exhausted",
]
EVENTS: tuple[EventName, ...] = get_args(EventName)
