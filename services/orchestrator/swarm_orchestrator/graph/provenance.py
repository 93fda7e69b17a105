"""Whether an adapter's report about an attempt comes from the adapter that holds it.

An event about an attempt changes nothing unless it carries the proof made with the
attempt's secret key (`swarm_common.proofs`: the key is made when the attempt is queued,
kept in `attempts.event_key`, and travels only in the task message, to the adapter that
runs it), and names the worker that claimed the attempt: the worker of the first proven
`task.started` (`attempts.worker`). Before that, a proven event is taken from any worker:
only the adapter that received the task message holds the key.

A report that fails either check is dropped: `reports.apply_event` answers
`Outcome.REJECTED` (the consumer counts it and acknowledges the entry), a warning is
logged, and the attempt's timeline gets one `event.rejected` entry (the first rejection of
each attempt; more would let a forger fill the timeline). Neither says anything about the
key or the proof. An attempt without a key (queued before migration 0006) accepts no
event: its task is retried by a person, or the system is drained before upgrading.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common import proofs
from swarm_common.messages import TaskEvent
from swarm_common.streams import Envelope
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Attempt, Event, Task

__all__ = ["REJECTED_ENTRY", "Rejection", "check", "is_proven", "reject"]

log = logging.getLogger(__name__)

REJECTED_ENTRY = "event.rejected"
MAX_WORKER_CHARS = 200


class Rejection(StrEnum):
    """Why a report was dropped (in the log line and the timeline entry)."""

    NO_KEY = "no_key"
    """The attempt has no key: it was queued by an orchestrator older than the proofs."""
    NO_PROOF = "no_proof"
    """The entry carries no proof: a forgery, or an adapter older than the proofs."""
    BAD_PROOF = "bad_proof"
    """The proof is not the envelope's under the attempt's key (another attempt's key, or a
    changed byte)."""
    WRONG_WORKER = "wrong_worker"
    """Proven, but another worker claimed the attempt."""


def check(envelope: Envelope, attempt: Attempt) -> Rejection | None:
    """None when `envelope` is proven to come from the adapter that holds `attempt`; else
    why not."""
    if not attempt.event_key:
        return Rejection.NO_KEY
    if not envelope.proof:
        return Rejection.NO_PROOF
    if not proofs.verify(attempt.event_key, envelope.raw, envelope.proof):
        return Rejection.BAD_PROOF
    message = envelope.message
    worker = message.worker if isinstance(message, TaskEvent) else None
    if attempt.worker is not None and worker != attempt.worker:
        return Rejection.WRONG_WORKER
    return None


async def is_proven(db: AsyncSession, envelope: Envelope) -> bool:
    """Whether the event is proven for the attempt it names (looked up here)."""
    message = envelope.message
    if not isinstance(message, TaskEvent):
        return False
    attempt = await db.scalar(
        select(Attempt).where(Attempt.task_id == message.task_id, Attempt.number == message.attempt)
    )
    return attempt is not None and check(envelope, attempt) is None


async def reject(
    db: AsyncSession, envelope: Envelope, *, attempt: Attempt, reason: Rejection
) -> None:
    """Log the dropped report and, for the attempt's first one, note it on the timeline of
    the attempt's own task (never the session the report names: that is unproven too)."""
    message = envelope.message
    claimed = str(getattr(message, "worker", ""))[:MAX_WORKER_CHARS]
    log.warning(
        "event without a valid proof of origin dropped",
        extra={
            "task_id": str(attempt.task_id),
            "attempt": attempt.number,
            "type": envelope.type,
            "envelope_id": envelope.id[:MAX_WORKER_CHARS],
            "reason": reason.value,
            "claimed_worker": claimed,
            "worker": attempt.worker,
        },
    )
    await timeline.write_pending(db)  # a rejection of this run's, still held, counts
    already = await db.scalar(
        select(
            exists().where(
                Event.task_id == attempt.task_id,
                Event.attempt == attempt.number,
                Event.type == REJECTED_ENTRY,
            )
        )
    )
    if already:
        return
    session_id = await db.scalar(select(Task.session_id).where(Task.id == attempt.task_id))
    if session_id is None:
        return
    timeline.record(
        db,
        session_id=session_id,
        task_id=attempt.task_id,
        attempt=attempt.number,
        type=REJECTED_ENTRY,
        data={
            "type": envelope.type,
            "reason": reason.value,
            "claimed_worker": claimed,
            "note": "later rejections of this attempt are only logged",
        },
    )
