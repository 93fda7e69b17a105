"""Which task stream entries this adapter runs: the decision, without I/O on Redis.

An entry is refused (and then dead-lettered) when it does not decode, is not a task
message for this adapter's agent, names no repository of the workspace, or was delivered
more than `max_deliveries` times. A refused entry that names an attempt fails that attempt
too, so its task does not wait for it forever."""

from __future__ import annotations

from dataclasses import dataclass

from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worktree import WorktreeError, Worktrees
from swarm_common.messages import TaskMessage
from swarm_common.specs import NOOP_AGENT
from swarm_common.streams import DecodeError, decode

__all__ = ["Refused", "admit"]


@dataclass(frozen=True)
class Refused:
    reason: str
    """For the dead-letter stream and the failure."""
    failing: TaskMessage | None = None
    """The attempt to fail (`dead_lettered`) with it, when the orchestrator may know it."""


def admit(
    fields: dict[bytes, bytes],
    *,
    deliveries: int,
    settings: AdapterSettings,
    worktrees: Worktrees,
) -> TaskMessage | Refused:
    """The entry's task message when this adapter can run it, else why not."""
    try:
        envelope = decode(fields)
    except DecodeError as exc:
        return Refused(f"undecodable: {exc}")
    message = envelope.message
    if not isinstance(message, TaskMessage) or message.agent != settings.agent:
        return Refused(f"{envelope.type} is not a task message for {settings.agent}")
    try:
        if message.agent != NOOP_AGENT:  # a noop task never touches its repository
            worktrees.repo(message)
    except WorktreeError as exc:  # no session of ours: nothing to run it on
        # If the orchestrator knows the task after all (a workspace not shared with
        # this adapter), it fails with the reason instead of waiting forever.
        return Refused(f"unknown task: {exc}", failing=message)
    if deliveries > settings.max_deliveries:
        # It kept killing or stalling its adapters: keep it, fail its task, stop trying.
        limit = f"delivered {deliveries} times (limit {settings.max_deliveries})"
        return Refused(limit, failing=message)
    return message
