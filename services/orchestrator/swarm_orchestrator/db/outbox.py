"""The transactional outbox: messages decided in a database transaction, published later.

State changes that must reach Redis (a queued task, a cancel request) add an `Outbox` row in
the same transaction as the change; `swarm_orchestrator.runtime.relay` publishes the rows.
A task message's row names its task and attempt: it is held until its agent stream has a
free slot (`swarm_orchestrator.runtime.dispatch`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import CancelRequest, Message, TaskMessage
from swarm_common.streams import ENVELOPE_FIELD, Keys, encode
from swarm_orchestrator.db.bulk import insert_rows
from swarm_orchestrator.db.models import Outbox

__all__ = ["Held", "add_cancel", "add_message", "add_tasks"]


def add_message(db: AsyncSession, *, stream: str, message: Message) -> None:
    """Publish `message` to `stream` once the current transaction commits."""
    env = encode(message)[ENVELOPE_FIELD].decode()
    db.add(Outbox(kind="xadd", target=stream, payload={ENVELOPE_FIELD: env}, publish_count=0))


@dataclass(frozen=True)
class Held:
    """A task message for `add_tasks`: its agent's stream, its task's priority and chain
    (`Task.chain`)."""

    stream: str
    message: TaskMessage
    priority: int
    chain: int


async def add_tasks(db: AsyncSession, held: Iterable[Held]) -> None:
    """Publish task messages to their agents' streams once the current transaction commits
    and each stream has room (`runtime.dispatch` picks among the held ones); in bulk, as a
    scheduling pass queues hundreds of tasks at once."""
    await insert_rows(
        db,
        Outbox,
        (
            {
                "kind": "xadd",
                "target": h.stream,
                "payload": {ENVELOPE_FIELD: encode(h.message)[ENVELOPE_FIELD].decode()},
                "publish_count": 0,
                "task_id": h.message.task_id,
                "attempt": h.message.attempt,
                "session_id": h.message.session_id,
                "priority": h.priority,
                "chain": h.chain,
            }
            for h in held
        ),
    )


def add_cancel(
    db: AsyncSession, *, keys: Keys, task_id: uuid.UUID, attempt: int, reason: str
) -> None:
    """Ask whoever runs this attempt to stop, once the current transaction commits."""
    request = CancelRequest(task_id=task_id, attempt=attempt, reason=reason)
    db.add(
        Outbox(
            kind="cancel",
            target=keys.cancel(task_id, attempt),
            payload={"channel": keys.cancel_channel, "request": request.model_dump(mode="json")},
            publish_count=0,
        )
    )
