"""One attempt in flight, as the consumer that claimed it (`worker`), the pipeline that runs
it (`attempt`) and the heartbeat beside it (`heartbeat`) share it: its state (cancel
requested and why, fenced, finished), the `Reporter` its events go out through, and the
fields that name it in those events and in log lines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from swarm_common.messages import Message, TaskMessage

__all__ = ["Reporter", "Running", "about", "log_context"]


@dataclass
class Running:
    message: TaskMessage
    entry_id: bytes
    """The task stream entry it came from (the heartbeat keeps it fresh)."""
    worktree: Path
    deliveries: int = 1
    """Deliveries of its task message so far (more than 1: taken over from another adapter)."""
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str = ""
    fenced: bool = False
    """The lease is lost: another attempt may own the task now; commit nothing."""
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    """The attempt's work is over: its heartbeat stops."""
    wrap: Callable[[Sequence[str]], list[str]] = list
    """What runs a command (agent, setup, gate) in the attempt's sandbox (`sandbox.Cell`);
    as it stands without one."""

    def request_cancel(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()

    def fence(self, reason: str) -> None:
        self.fenced = True
        self.request_cancel(reason)


class Reporter(Protocol):
    """Where an attempt's events go and where cancel requests come from: the adapter's
    Redis streams; a list in tests."""

    async def publish(self, event: Message, *, retry: bool = True) -> None:
        """Store `event`; with `retry`, keep trying until it is stored."""

    async def cancel_request(self, message: TaskMessage) -> str | None:
        """Why this attempt is to be cancelled; None while nobody asked."""


def about(message: TaskMessage, worker: str) -> dict[str, Any]:
    """The fields every event about this attempt carries."""
    return {
        "session_id": message.session_id,
        "task_id": message.task_id,
        "attempt": message.attempt,
        "worker": worker,
    }


def log_context(message: TaskMessage, worker: str, **extra: Any) -> dict[str, Any]:
    """The structured fields of every log line about this attempt."""
    return {
        "session_id": str(message.session_id),
        "task_id": str(message.task_id),
        "task_key": message.task_key,
        "attempt": message.attempt,
        "worker": worker,
        **extra,
    }
